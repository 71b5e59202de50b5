"""The policy tables of the pipeline and the registers they use, named once.

The agent's pipeline (docs/design/ovs-pipeline.md) gives NetworkPolicy four tables, all owned by
this package: 50 egress rules, 60 egress default (isolation), 90 ingress rules, 100 ingress
default. An allowed packet jumps *over* its direction's default table: egress to 70 (L3
forwarding), ingress to 105 (conntrack commit), so a new connection is committed only after the
ingress checks. Established and related connections bypass the rule tables (priority 210).

Registers: reg1 holds the target ofport (set by L2 forwarding calculation, table 80) and is the
"to" match of ingress rules; the conjunction action flows load the rule's conjunction ID into
reg5 (egress) / reg6 (ingress) as upstream Antrea does, so the commit in table 105 can copy them
into ct_label bits 32..63 / 0..31 and per-rule packet counters can match established packets.
"""

from __future__ import annotations

from dataclasses import dataclass

from antrea.apis.controlplane.types import Direction

ANTREA_EGRESS_RULE = 45  # Antrea-native rules (antrea_native.py), before the Kubernetes ones
EGRESS_RULE = 50
EGRESS_DEFAULT = 60
L3_FORWARDING = 70
ANTREA_INGRESS_RULE = 85
INGRESS_RULE = 90
INGRESS_DEFAULT = 100
CT_COMMIT = 105

POLICY_TABLES = (
    ANTREA_EGRESS_RULE,
    EGRESS_RULE,
    EGRESS_DEFAULT,
    ANTREA_INGRESS_RULE,
    INGRESS_RULE,
    INGRESS_DEFAULT,
)

PRIO_STALE_SYN = 212  # a SYN reusing a dead connection's 5-tuple is re-evaluated as new
PRIO_METRIC = 211  # per-rule established-packet counters, above the generic bypass
PRIO_BYPASS = 210  # ct_state=-new+est / -new+rel, gateway (kubelet probes)
PRIO_MATCH = 200  # conjunction clause flows (band 0; band b is priority PRIO_MATCH - b)
PRIO_ISOLATION = 200  # default-table drops
PRIO_ACTION = 190  # conj_id=N action flows (any priority works: they match conj_id only)
PRIO_MATCH_LOWEST = 101  # the lowest clause band; nothing else lives in 101..199 of a rule table
MATCH_BANDS = PRIO_MATCH - PRIO_MATCH_LOWEST + 1
PRIO_MISS = 0

TARGET_REG = 1
EGRESS_CONJ_REG = 5
INGRESS_CONJ_REG = 6


@dataclass(frozen=True, slots=True)
class DirectionTables:
    rule_table: int
    default_table: int
    allow_goto: int  # where an allowed packet goes (past the default table)
    conj_reg: int
    label_shift: int  # the rule's bits in ct_label


EGRESS = DirectionTables(EGRESS_RULE, EGRESS_DEFAULT, L3_FORWARDING, EGRESS_CONJ_REG, 32)
INGRESS = DirectionTables(INGRESS_RULE, INGRESS_DEFAULT, CT_COMMIT, INGRESS_CONJ_REG, 0)


def tables_for(direction: Direction) -> DirectionTables:
    return INGRESS if direction is Direction.IN else EGRESS
