"""``antctl get featuregates``: which of upstream's feature gates this implementation has, and
whether the configuration enables them.

Upstream's antctl reads the ``featureGates`` of the ``antrea-config`` ConfigMap; here features
are switched by ordinary configuration keys, so the status is computed from the agent's
configuration: on a node from the running agent (``/config``), otherwise from ConfigMap
``kube-system/antrea-config`` (key ``antrea-agent.conf``). Only features this implementation
has are listed; upstream's others (Egress, Multicast, FlowExporter, ...) do not exist here.

antctl reads the configuration as the data it is (Antrea's key names and their defaults, as
``docs/configuration.md`` documents them), not through the agent's code: it depends on no part
of the agent (a unit test keeps these defaults equal to the agent's).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from antrea.antctl.controller_client import AntctlError, kubeconfig_path
from antrea.antctl.output import Column, emit
from antrea.apis import agentapi


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    component: str  # agent | controller
    stage: str  # upstream's maturity: ALPHA | BETA | GA
    key: str  # the agent configuration key that switches it ("" when always on)
    default: bool = True  # the agent's default for that key

    def enabled(self, cfg: Mapping[str, Any]) -> bool:
        """The key's value; else the gate's in ``featureGates`` (the key wins, as in the agent)."""
        if not self.key:
            return True
        value = cfg.get(self.key)
        if value is None:
            gates = cfg.get("featureGates")
            value = gates.get(self.name) if isinstance(gates, dict) else None
        if value is None:
            return self.default
        if not isinstance(value, bool):
            raise AntctlError(f"invalid agent configuration: {self.key} must be a boolean")
        return value


FEATURES = (
    Feature("AntreaPolicy", "agent", "GA", "enableNetworkPolicy"),
    Feature("AntreaProxy", "agent", "GA", "antreaProxy"),
    Feature("AntreaPolicy", "controller", "GA", ""),
)
COLUMNS = [
    Column("COMPONENT", lambda o: o["component"]),
    Column("FEATUREGATE", lambda o: o["name"]),
    Column("STATUS", lambda o: o["status"]),
    Column("VERSION", lambda o: o["version"]),
    Column("CONFIG", lambda o: o["config"]),
]


def feature_gates(cfg: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "component": f.component,
            "name": f.name,
            "status": "Enabled" if f.enabled(cfg) else "Disabled",
            "version": f.stage,
            "config": f.key or "-",
        }
        for f in FEATURES
    ]


def register(get_sub: Any, parent: argparse.ArgumentParser) -> None:
    p = get_sub.add_parser(
        "featuregates", aliases=["fg"], parents=[parent], help="features and their status"
    )
    p.add_argument("--agent-api", help="agent API URL (default $ANTREA_AGENT_API)")
    p.set_defaults(func=_get)


async def _from_configmap(kubeconfig: str | None) -> dict[str, Any]:
    from antrea.apis.controlplane.names import NAMESPACE
    from antrea.k8s.resources import ApiClientResources, KubeError, load_api_client, ns_path

    where = f"{NAMESPACE}/{agentapi.CONFIGMAP}"

    path = kubeconfig_path(kubeconfig)
    if path is None:
        raise AntctlError("no kubeconfig: use --kubeconfig or set KUBECONFIG")
    client = await load_api_client(path)
    try:
        cm = await ApiClientResources(client).get(
            ns_path("v1", NAMESPACE, "configmaps", agentapi.CONFIGMAP)
        )
    except KubeError as exc:
        raise AntctlError(f"cannot read ConfigMap {where}: {exc}") from exc
    finally:
        await client.close()
    if cm is None:
        raise AntctlError(f"ConfigMap {where} not found")
    data = yaml.safe_load((cm.get("data") or {}).get(agentapi.CONFIGMAP_KEY) or "") or {}
    if not isinstance(data, dict):
        raise AntctlError(f"{agentapi.CONFIGMAP_KEY} in ConfigMap {where} is not a mapping")
    return data


def _get(args: argparse.Namespace) -> int:
    from antrea.antctl.agent_cmds import agent_get, agent_mode

    if agent_mode() or args.agent_api:
        raw = agent_get(args, agentapi.CONFIG)
    else:
        raw = asyncio.run(_from_configmap(args.kubeconfig))
    if not isinstance(raw, dict):
        raise AntctlError("invalid agent configuration: not a mapping")
    return emit(feature_gates(raw), args.output, COLUMNS)
