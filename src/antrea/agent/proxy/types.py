"""What AntreaProxy needs from Services and EndpointSlices, parsed once.

A `ServicePort` is one port of a Service with a ClusterIP (headless and ExternalName Services
have none and are skipped, as are IPv6 addresses); `endpoints_of` reads the Service's
EndpointSlices into the endpoints of each of its ports (by port name, so a named targetPort may
mean a different number per pod: the slices carry the resolved numbers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from antrea.ovs.openflow.flow import Proto

JSON = dict[str, Any]
PROTOCOLS = {"TCP": Proto.TCP, "UDP": Proto.UDP, "SCTP": Proto.SCTP}
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, as upstream
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP or SCTP
    cluster_ip: ipaddress.IPv4Address
    port: int
    node_port: int | None = None
    affinity_timeout: int | None = None  # seconds, when sessionAffinity is ClientIP
    internal_local: bool = False  # internalTrafficPolicy: Local
    external_local: bool = False  # externalTrafficPolicy: Local

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.name, self.port_name, self.protocol)

    @property
    def proto(self) -> Proto:
        """The ovs-ofctl protocol name (tcp, udp, sctp)."""
        return PROTOCOLS[self.protocol]

    def __str__(self) -> str:
        port = f":{self.port_name}" if self.port_name else ""
        return f"{self.namespace}/{self.name}{port}/{self.protocol}"


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    ip: ipaddress.IPv4Address
    port: int
    node: str = ""
    ready: bool = True


def service_ports(svc: JSON) -> list[ServicePort]:
    md = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    try:
        ip = ipaddress.ip_address(str(spec.get("clusterIP") or ""))
    except ValueError:
        return []  # headless ("None") or not allocated
    if not isinstance(ip, ipaddress.IPv4Address):
        return []
    timeout: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        timeout = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    out = []
    for p in spec.get("ports") or ():
        proto = str(p.get("protocol") or "TCP")
        if proto not in PROTOCOLS or not isinstance(p.get("port"), int):
            continue
        node_port = p.get("nodePort") if isinstance(p.get("nodePort"), int) else None
        out.append(
            ServicePort(
                namespace=str(md.get("namespace", "")),
                name=str(md.get("name", "")),
                port_name=str(p.get("name") or ""),
                protocol=proto,
                cluster_ip=ip,
                port=p["port"],
                node_port=node_port,
                affinity_timeout=timeout,
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                external_local=spec.get("externalTrafficPolicy") == "Local",
            )
        )
    return out


def endpoints_of(slices: Iterable[JSON]) -> dict[tuple[str, str], frozenset[Endpoint]]:
    """(port name, protocol) -> ready endpoints, over all slices of one Service."""
    out: dict[tuple[str, str], set[Endpoint]] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        ports = [
            (str(p.get("name") or ""), str(p.get("protocol") or "TCP"), p.get("port"))
            for p in s.get("ports") or ()
        ]
        for ep in s.get("endpoints") or ():
            conds = ep.get("conditions") or {}
            if conds.get("ready") is False:
                continue  # unset means ready (as upstream)
            node = str(ep.get("nodeName") or "")
            for addr in ep.get("addresses") or ():
                try:
                    ip = ipaddress.ip_address(str(addr))
                except ValueError:
                    continue
                if not isinstance(ip, ipaddress.IPv4Address):
                    continue
                for name, proto, num in ports:
                    if isinstance(num, int) and 0 < num < 65536:
                        out.setdefault((name, proto), set()).add(Endpoint(ip, num, node))
    return {k: frozenset(v) for k, v in out.items()}
