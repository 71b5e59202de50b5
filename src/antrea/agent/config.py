"""The agent's configuration schema (YAML, Antrea's key names where they exist).

The same file drives `antrea agent` and `antrea daemon` (which also reads the controller's keys
from it, `antrea.controller.config`). A key neither role knows is ignored with one structured
``config_unknown_keys`` warning (`antrea.util.config`). Defaults mirror antrea-agent.conf.
``featureGates`` (upstream's map of gate name to bool): ``AntreaProxy`` is the gate of
``antreaProxy``; other gates are reported as unknown.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from antrea.apis import agentapi
from antrea.apis.controlplane import names
from antrea.util.config import (
    ConfigError,
    as_bool,
    as_float,
    as_int,
    as_str,
    read_mapping,
    warn_unknown_keys,
)

__all__ = ["AgentConfig", "ConfigError", "from_mapping", "load_config"]

ENCAP_MODES = ("encap", "noEncap")
TUNNEL_TYPES = ("vxlan", "geneve")
DATAPATH_TYPES = ("system", "netdev")
FLOW_TRANSPORTS = ("native", "ofctl")
# Outer Ethernet + IPv4 + UDP + VXLAN/Geneve(base) headers, as Antrea subtracts them.
TUNNEL_OVERHEAD = {"vxlan": 50, "geneve": 50}

# Upstream feature gates this implementation has, and the key each one switches.
FEATURE_GATES = {"AntreaProxy": "antreaProxy"}


@dataclass(frozen=True, slots=True)
class AgentConfig:
    nodeName: str = ""
    kubeconfig: str = ""
    # The API server URL to use instead of the in-cluster one (clusters without kube-proxy).
    kubeAPIServerOverride: str = ""
    ovsBridge: str = "br-int"
    ovsDatapathType: str = "system"
    ovsRunDir: str = "/var/run/openvswitch"
    hostGateway: str = "gw0"
    tunnelType: str = "vxlan"
    trafficEncapMode: str = "encap"
    defaultMTU: int = 0
    transportInterface: str = ""
    # The netdev bridge that takes the node's uplink and address (agent/uplink.py): userspace
    # tunnels leave only through an OVS bridge owning the underlay address. "auto": "br-phy"
    # with ovsDatapathType netdev and encap, else none; "none": never; else that bridge name.
    uplinkBridge: str = "auto"
    cniSocket: str = "/var/run/antrea/cni.sock"
    cniConfDir: str = "/etc/cni/net.d"
    cniBinDir: str = "/opt/cni/bin"
    stateDir: str = "/var/run/antrea"
    apiPort: int = agentapi.DEFAULT_PORT
    # The HTTPS operator endpoints (/livez, /readyz, /metrics; agent/secureapi.py) listen on
    # the node's InternalIP at apiPort; "" = that address, "none" = do not serve them.
    secureAPIBindAddress: str = ""
    controllerAPIPort: int = names.API_PORT
    leaseNamespace: str = names.NAMESPACE
    # Antrea's option for datapaths that do not complete partial checksums (the userspace one):
    # pod interfaces and gw0 send fully checksummed packets.
    disableTXChecksumOffload: bool = False
    # CNI ADD waits (up to 30 s, then "try again later") for the initial NetworkPolicy sync, so
    # that no pod starts before the policies selecting it are realized (Antrea's behaviour).
    waitForPolicyOnAdd: bool = False
    # false: run pod networking only (no NetworkPolicy realization; tests of the pod network).
    enableNetworkPolicy: bool = True
    # Seconds to wait for the policy controller's initial sync before deleting the previous
    # round's flows (Antrea waits for its NP/pod/route installers the same way).
    policyReadyTimeout: float = 30.0
    # Seconds between checks that ovs-vswitchd still holds our flows (canary flow).
    ovsCheckInterval: float = 2.0
    # How flow bundles reach the bridge: "native" (one held OpenFlow 1.5 connection, binary
    # flow mods) or "ofctl" (one `ovs-ofctl --bundle` process per bundle; the fallback).
    flowTransport: str = "native"
    # AntreaProxy: Services (ClusterIP, NodePort, affinity) in br-int; serviceCIDR gets a
    # REJECT for Service ports without endpoints ("" = none).
    antreaProxy: bool = True
    # NetworkPolicy audit log (agent/auditlog.py); empty: no audit logging.
    networkPolicyAuditLog: str = "/var/log/antrea/networkpolicy/np.log"
    serviceCIDR: str = "10.96.0.0/12"

    @property
    def encap(self) -> bool:
        return self.trafficEncapMode == "encap"

    @property
    def uplink_bridge(self) -> str:
        """The bridge `uplinkBridge` resolves to ("" = do not connect the uplink)."""
        if self.uplinkBridge == "auto":
            return "br-phy" if self.ovsDatapathType == "netdev" and self.encap else ""
        return "" if self.uplinkBridge in ("", "none") else self.uplinkBridge

    @property
    def db_target(self) -> str:
        return f"unix:{self.ovsRunDir}/db.sock"

    @property
    def state_path(self) -> Path:
        return Path(self.stateDir)


def _coerce(name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        return as_bool(name, value)
    if isinstance(default, int):
        return as_int(name, value)
    if isinstance(default, float):
        return as_float(name, value)
    return as_str(name, value)


AGENT_KEYS = frozenset(f.name for f in fields(AgentConfig)) | {"featureGates"}


def from_mapping(data: dict[str, Any], *, also_known: Iterable[str] = ()) -> AgentConfig:
    """Build and validate an `AgentConfig` from a parsed YAML mapping.

    Keys outside the schema (and outside `also_known`: the controller's, when the daemon reads
    one file for both roles) are ignored with a warning.
    """
    warn_unknown_keys(data, AGENT_KEYS | set(also_known), role="agent")
    base = AgentConfig()
    values: dict[str, Any] = {}
    gates = data.get("featureGates") or {}
    if not isinstance(gates, dict):
        raise ConfigError("featureGates: expected a mapping of gate name to true/false")
    warn_unknown_keys(gates, FEATURE_GATES, role="agent", section="featureGates")
    for gate, key in FEATURE_GATES.items():
        if gate in gates:
            values[key] = as_bool(f"featureGates.{gate}", gates[gate])
    for f in fields(AgentConfig):
        if f.name in data:
            values[f.name] = _coerce(f.name, getattr(base, f.name), data[f.name])
    if not values.get("nodeName"):
        values["nodeName"] = os.environ.get("NODE_NAME") or socket.gethostname()
    cfg = AgentConfig(**values)
    if cfg.trafficEncapMode not in ENCAP_MODES:
        raise ConfigError(f"trafficEncapMode: must be one of {ENCAP_MODES}")
    if cfg.tunnelType not in TUNNEL_TYPES:
        raise ConfigError(f"tunnelType: must be one of {TUNNEL_TYPES}")
    if cfg.flowTransport not in FLOW_TRANSPORTS:
        raise ConfigError(f"flowTransport: must be one of {FLOW_TRANSPORTS}")
    if cfg.serviceCIDR:
        try:
            ipaddress.IPv4Network(cfg.serviceCIDR)
        except ValueError as exc:
            raise ConfigError(f"serviceCIDR: {exc}") from None
    if cfg.ovsDatapathType not in DATAPATH_TYPES:
        raise ConfigError(f"ovsDatapathType: must be one of {DATAPATH_TYPES}")
    if not 0 < cfg.apiPort < 65536:
        raise ConfigError("apiPort: must be a TCP port")
    if cfg.defaultMTU < 0:
        raise ConfigError("defaultMTU: must be >= 0")
    return cfg


def load_config(path: str | Path | None, *, also_known: Iterable[str] = ()) -> AgentConfig:
    """Read the YAML file at `path` (an empty file, or no path, means all defaults)."""
    return from_mapping(read_mapping(path), also_known=also_known)
