"""NodePort on the host: traffic to any of the node's addresses at a nodePort enters br-int.

The nat table's ``ANTREA-NODEPORT`` chain (jumped to from PREROUTING and OUTPUT for local
destinations)
DNATs each realized nodePort to a virtual address, keeping the port: 169.254.0.250 for
externalTrafficPolicy Cluster, 169.254.0.249 for Local. The host routes 169.254.0.248/30 to gw0
(via the virtual next hop, like the service CIDR) and the service table 41 matches (virtual
address, nodePort). Cluster traffic is masqueraded to gw0's address on its way into gw0
(``ANTREA-NODEPORT-MASQ`` in POSTROUTING), so an endpoint on another node answers through this
node; Local keeps the client's address and is only DNATed on nodes with a local endpoint (other
nodes do not answer: the port is closed there). Rewritten whole with ``iptables-restore``.

noEncap: Cluster traffic is SNATed to the virtual 169.254.0.251 instead of gw0's address. An
endpoint on another node is reached over the underlay: br-int sends the DNATed packet back to the
host (`flows.noencap_flows`), whose POSTROUTING masquerades 169.254.0.251 to the node's address
on the transport interface. The endpoint answers the node's address; the host un-SNATs the reply
to 169.254.0.251, which is routed into gw0, so br-int un-DNATs it before the host answers the
client. (gw0's own address would not do: a reply to it is delivered to the host's stack around
br-int and never un-DNATed.)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

import structlog

from antrea.agent.proxy.flows import NODEPORT_CLUSTER_IP, NODEPORT_LOCAL_IP, NODEPORT_SNAT_IP

log = structlog.get_logger(__name__)

CHAIN = "ANTREA-NODEPORT"
MASQ_CHAIN = "ANTREA-NODEPORT-MASQ"
Entry = tuple[str, int, bool]  # protocol (tcp/udp/sctp), nodePort, externalTrafficPolicy Local


def nodeport_rules(entries: Iterable[Entry], gateway: str, encap: bool = True) -> str:
    lines = ["*nat", f":{CHAIN} - [0:0]", f":{MASQ_CHAIN} - [0:0]"]
    for proto, port, local in sorted(set(entries)):
        ip = NODEPORT_LOCAL_IP if local else NODEPORT_CLUSTER_IP
        lines.append(f"-A {CHAIN} -p {proto} --dport {port} -j DNAT --to-destination {ip}")
    if encap:
        lines.append(f"-A {MASQ_CHAIN} -o {gateway} -d {NODEPORT_CLUSTER_IP} -j MASQUERADE")
    else:
        lines += [
            f"-A {MASQ_CHAIN} -o {gateway} -d {NODEPORT_CLUSTER_IP} -j SNAT "
            f"--to-source {NODEPORT_SNAT_IP}",
            f"-A {MASQ_CHAIN} -s {NODEPORT_SNAT_IP}/32 ! -o {gateway} -j MASQUERADE",
        ]
    lines += ["COMMIT", ""]
    return "\n".join(lines)


def sync_nodeports(entries: Iterable[Entry], gateway: str, encap: bool = True) -> bool:
    if shutil.which("iptables-restore") is None:
        return False
    proc = subprocess.run(
        ["iptables-restore", "--noflush", "-w", "5"],
        input=nodeport_rules(entries, gateway, encap),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        log.warning("iptables_restore_failed", stderr=proc.stderr.strip()[:500])
        return False
    base = ["iptables", "-w", "5", "-t", "nat"]
    for jump in (
        ["PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment",
         "--comment", "antrea", "-j", CHAIN],
        ["OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment",
         "--comment", "antrea", "-j", CHAIN],
        ["POSTROUTING", "-m", "comment", "--comment", "antrea", "-j", MASQ_CHAIN],
    ):  # fmt: skip
        if subprocess.run([*base, "-C", *jump], capture_output=True, check=False).returncode:
            add = subprocess.run([*base, "-I", *jump], capture_output=True, text=True, check=False)
            if add.returncode != 0:
                log.warning("iptables_jump_failed", stderr=add.stderr.strip()[:500])
                return False
    return True
