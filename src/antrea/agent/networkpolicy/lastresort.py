"""The last resort of a rule whose realization crashed and whose isolation retry crashed too.

The reconciler contains planning and switch failures per rule, and the controller narrows any
other crash down to the rules causing it, then realizes those with their isolation (drop)
flows alone (`isolate_only`). When even that raises (a bug on the isolation path itself, e.g.
in the Antrea-native realizer's state or the atoms of the pods), the rule would be left with
nothing installed: a Drop unenforced, pods that should be isolated reachable (fail open).

This module builds, from the most basic values only (each applied-to pod's ofport, or its IP
addresses), flows that drop every new connection of those pods in the direction of the rule:
``reg1=<ofport>`` in table 85 (ingress) or ``nw_src=<pod IP>`` in table 45 (egress), at
`PRIO_LAST_RESORT`, above every Antrea-native and Kubernetes rule (established connections
keep their bypass, as for any policy change). No planner, atom or realizer state is involved.

They belong to one owner, ``(PolicyOwner.LAST_RESORT,)`` (two crashed rules may share a pod),
held by the reconciler per rule until a later batch realizes the rule (or it is deleted).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

import structlog

from antrea.agent.networkpolicy import flows as fb
from antrea.agent.networkpolicy.cache import CompletedRule
from antrea.agent.openflow import pipeline as p
from antrea.agent.owners import PolicyOwner
from antrea.apis.controlplane.types import Direction, PodReference
from antrea.ovs.openflow.flow import Drop, Flow, Match, Proto

log = structlog.get_logger(__name__)

OWNER = (PolicyOwner.LAST_RESORT,)


def rule_drops(
    round_num: int, rule: CompletedRule, ofport_of: Callable[[PodReference], int | None]
) -> list[Flow]:
    """Drops for every applied-to pod of ``rule`` this node can name (a pod whose ofport or
    address cannot be read is skipped, the others still drop)."""
    c = fb.cookie(round_num)
    out: list[Flow] = []
    inbound = rule.direction is Direction.IN
    for t in rule.targets:
        for ip in (None,) if inbound else t.ips:  # ingress: the pod's ofport; egress: each IP
            try:
                if ip is None:
                    port = ofport_of(t.pod)
                    if port is None:  # not a pod of this node
                        continue
                    m = Match(proto=Proto.IP, regs=(p.TARGET_OFPORT.match(port),))
                    out.append(Flow(p.ANTREA_INGRESS_RULE, p.PRIO_LAST_RESORT, m, (Drop(),), c))
                    continue
                addr = ipaddress.ip_address(ip)
                if addr.version != 4:  # (the policy tables match IPv4 only)
                    continue
                m = Match(proto=Proto.IP, nw_src=addr)
                out.append(Flow(p.ANTREA_EGRESS_RULE, p.PRIO_LAST_RESORT, m, (Drop(),), c))
            except Exception:
                log.warning("policy_last_resort_skipped", rule=rule.id, pod=str(t.pod), ip=ip)
    return out


def merged(flows: Iterable[list[Flow]]) -> list[Flow] | None:
    """One owner's flows from every rule's (each flow once)."""
    out = {f.key: f for fl in flows for f in fl}
    return list(out.values()) or None
