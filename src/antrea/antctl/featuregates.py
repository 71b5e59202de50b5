"""``antctl get featuregates``: which of upstream's feature gates this implementation has, and
whether the configuration enables them.

Upstream's antctl reads the ``featureGates`` of the ``antrea-config`` ConfigMap; here features
are switched by ordinary configuration keys, so the status is computed from the agent's
configuration: on a node from the running agent (``/config``), otherwise from ConfigMap
``kube-system/antrea-config`` (key ``antrea-agent.conf``). Only features this implementation
has are listed; upstream's others (Egress, Multicast, FlowExporter, ...) do not exist here.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from antrea.agent.config import AgentConfig, ConfigError, from_mapping
from antrea.antctl.controller_client import AntctlError, kubeconfig_path
from antrea.antctl.output import Column, emit


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    component: str  # agent | controller
    stage: str  # upstream's maturity: ALPHA | BETA | GA
    enabled: Callable[[AgentConfig], bool]
    key: str  # the configuration key that switches it ("" when always on)


FEATURES = (
    Feature("AntreaPolicy", "agent", "GA", lambda c: c.enableNetworkPolicy, "enableNetworkPolicy"),
    Feature("AntreaProxy", "agent", "GA", lambda c: c.antreaProxy, "antreaProxy"),
    Feature("AntreaPolicy", "controller", "GA", lambda c: True, ""),
)
COLUMNS = [
    Column("COMPONENT", lambda o: o["component"]),
    Column("FEATUREGATE", lambda o: o["name"]),
    Column("STATUS", lambda o: o["status"]),
    Column("VERSION", lambda o: o["version"]),
    Column("CONFIG", lambda o: o["config"]),
]


def feature_gates(cfg: AgentConfig) -> list[dict[str, str]]:
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
    from antrea.k8s.resources import ApiClientResources, KubeError, load_api_client

    path = kubeconfig_path(kubeconfig)
    if path is None:
        raise AntctlError("no kubeconfig: use --kubeconfig or set KUBECONFIG")
    client = await load_api_client(path)
    try:
        cm = await ApiClientResources(client).get(
            "/api/v1/namespaces/kube-system/configmaps/antrea-config"
        )
    except KubeError as exc:
        raise AntctlError(f"cannot read ConfigMap kube-system/antrea-config: {exc}") from exc
    finally:
        await client.close()
    if cm is None:
        raise AntctlError("ConfigMap kube-system/antrea-config not found")
    data = yaml.safe_load((cm.get("data") or {}).get("antrea-agent.conf") or "") or {}
    if not isinstance(data, dict):
        raise AntctlError("antrea-agent.conf in ConfigMap antrea-config is not a mapping")
    return data


def _get(args: argparse.Namespace) -> int:
    from antrea.antctl.agent_cmds import agent_get, agent_mode

    if agent_mode() or args.agent_api:
        raw = agent_get(args, "/config")
    else:
        raw = asyncio.run(_from_configmap(args.kubeconfig))
    try:
        cfg = from_mapping({k: v for k, v in raw.items() if v is not None})
    except ConfigError as exc:
        raise AntctlError(f"invalid agent configuration: {exc}") from exc
    return emit(feature_gates(cfg), args.output, COLUMNS)
