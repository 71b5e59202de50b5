"""Refuse connections to Service ports without endpoints at once, as kube-proxy does.

A Service port without endpoints has no flows in the service tables, so its packets leave the
pipeline through gw0 with the ClusterIP still as destination. The host routes the service CIDR
back to gw0 (via a virtual next hop with a permanent neighbor entry -> the global virtual MAC,
as upstream's proxyAll does), so the packet is forwarded, and this chain in the filter table's
FORWARD rejects it first: TCP with a reset, everything else with ICMP port unreachable.
Rewritten as a whole with ``iptables-restore --noflush``.
"""

from __future__ import annotations

import ipaddress
import subprocess

import structlog

from antrea.agent.iptables import apply_chain

log = structlog.get_logger(__name__)

CHAIN = "ANTREA-SERVICE-REJECT"
VIRTUAL_NEXT_HOP = "169.254.0.253"


def reject_rules(service_cidr: ipaddress.IPv4Network, gateway: str) -> str:
    c = '-m comment --comment "antrea: service without endpoints"'
    return "\n".join(
        [
            "*filter",
            f":{CHAIN} - [0:0]",
            f"-A {CHAIN} -i {gateway} -d {service_cidr} -p tcp {c} -j REJECT "
            "--reject-with tcp-reset",
            f"-A {CHAIN} -i {gateway} -d {service_cidr} {c} -j REJECT "
            "--reject-with icmp-port-unreachable",
            "COMMIT",
            "",
        ]
    )


def sync_route(service_cidr: ipaddress.IPv4Network, gateway: str, virtual_mac: str) -> bool:
    """``<service CIDR> via 169.254.0.253 dev gw0 onlink`` and its neighbor (idempotent)."""
    for argv in (
        ["ip", "neigh", "replace", VIRTUAL_NEXT_HOP, "lladdr", virtual_mac, "dev", gateway,
         "nud", "permanent"],
        ["ip", "route", "replace", str(service_cidr), "via", VIRTUAL_NEXT_HOP, "dev", gateway,
         "onlink"],
    ):  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log.warning("service_route_failed", argv=argv, stderr=proc.stderr.strip()[:300])
            return False
    return True


def sync_reject(service_cidr: ipaddress.IPv4Network, gateway: str) -> bool:
    """Install the chain and the jump from FORWARD (idempotent). False when iptables fails."""
    doc = reject_rules(service_cidr, gateway)
    return apply_chain(doc, table="filter", parent="FORWARD", chain=CHAIN, insert=True)
