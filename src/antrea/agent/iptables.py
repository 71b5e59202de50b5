"""SNAT for pod traffic that leaves the node through its own stack (Antrea's ANTREA-POSTROUTING).

Pods reach anything outside the pod network (another node's address, the API server, the
internet) through gw0 and the node's routing table. Without SNAT the answer would come back to
the pod's address, which other nodes route through the tunnel: it would enter the pipeline from
the tunnel, where conntrack never saw the request, and be dropped as invalid. So traffic from
the local pod CIDR that leaves through anything but gw0 is masqueraded to the node's address,
except towards pod CIDRs (this node's and every other node's: in noEncap mode pod-to-pod traffic
crosses the node's stack and must keep the pod source address).

The chain is rewritten as a whole with ``iptables-restore --noflush`` (one atomic commit).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Iterable

import structlog

log = structlog.get_logger(__name__)

CHAIN = "ANTREA-POSTROUTING"


def masquerade_rules(
    *,
    pod_cidr: ipaddress.IPv4Network,
    gateway: str,
    pod_cidrs: Iterable[ipaddress.IPv4Network],
) -> str:
    """The iptables-restore document for the nat table's ANTREA-POSTROUTING chain."""
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    for cidr in sorted(set(pod_cidrs) | {pod_cidr}, key=lambda n: (int(n.network_address), n)):
        lines.append(
            f'-A {CHAIN} -s {pod_cidr} -d {cidr} -m comment --comment "antrea: pod to pod" '
            "-j RETURN"
        )
    lines.append(
        f'-A {CHAIN} -s {pod_cidr} ! -o {gateway} -m comment --comment "antrea: masquerade '
        'pod to external" -j MASQUERADE'
    )
    lines += ["COMMIT", ""]
    return "\n".join(lines)


def sync_masquerade(
    *,
    pod_cidr: ipaddress.IPv4Network,
    gateway: str,
    pod_cidrs: Iterable[ipaddress.IPv4Network],
) -> bool:
    """Install the chain and the jump to it (idempotent). False if iptables is unavailable."""
    doc = masquerade_rules(pod_cidr=pod_cidr, gateway=gateway, pod_cidrs=pod_cidrs)
    return apply_chain(doc, table="nat", parent="POSTROUTING", chain=CHAIN, insert=False)


def apply_chain(doc: str, *, table: str, parent: str, chain: str, insert: bool) -> bool:
    """Load `doc` (an ``iptables-restore`` document that rewrites `chain`) atomically, then make
    sure `parent` jumps to `chain` once (``-I`` first when `insert`, else ``-A``). Idempotent;
    False, with a warning, when iptables is missing or refuses."""
    if shutil.which("iptables-restore") is None or shutil.which("iptables") is None:
        log.warning("iptables_unavailable", reason="no iptables-restore on PATH")
        return False
    proc = subprocess.run(
        ["iptables-restore", "--noflush", "-w", "5"],
        input=doc,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        log.warning("iptables_restore_failed", stderr=proc.stderr.strip()[:500])
        return False
    jump = [parent, "-m", "comment", "--comment", "antrea", "-j", chain]
    base = ["iptables", "-w", "5", "-t", table]
    if subprocess.run([*base, "-C", *jump], capture_output=True, check=False).returncode != 0:
        add = subprocess.run(
            [*base, "-I" if insert else "-A", *jump], capture_output=True, text=True, check=False
        )
        if add.returncode != 0:
            log.warning("iptables_jump_failed", stderr=add.stderr.strip()[:500])
            return False
    return True
