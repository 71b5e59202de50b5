"""The br-int pipeline, named once: tables, registers, marks, priorities and fixed values.

This module is the single source of truth of the pipeline's layout. Every flow owner (the
pipeline's own flows in `builder`, NetworkPolicy realization, AntreaProxy, node routes, tests
and benchmarks) takes its table numbers, register fields and priorities from here; nothing else
spells them as bare numbers. docs/design/ovs-pipeline.md walks the tables with real dump-flows
excerpts.

Tables are numbered as in early Antrea (v0.2+, with conntrack commit in 105)::

  0 classifier: mark source in reg0, pods/gateway -> 10, tunnel -> 30
  10 spoof guard: (in_port, MAC, IP) per pod; gateway unchecked; ARP -> 20, IP -> 30; miss drop
  20 ARP responder: answer remote gateway IPs with the global virtual MAC; other ARP NORMAL
  30 conntrack: ct(table=31, zone=65520, nat) (un-DNAT replies, re-DNAT established requests)
  31 conntrack state: drop +inv; resubmit(,40) then -> 41
  40 session affinity: learned (client, Service) -> endpoint; miss marks "select an endpoint"
  41 service LB: new connections to a Service port -> its select group (AntreaProxy)
  42 endpoint DNAT: ct(commit, nat(dst=endpoint)) -> 45; miss -> 45
  45 Antrea-native egress rules (before 50)
  50 egress rules / 60 egress default: policy (pass-through without policy)
  70 L3 forwarding: remote pod subnets -> tunnel (tun_dst, MACs, dec_ttl); tunnel -> local pods
  80 L2 forwarding calc: dst MAC -> reg1 = ofport, reg0[16] = 1
  85 Antrea-native ingress rules (before 90)
  90 ingress rules / 100 ingress default: policy (pass-through without policy)
  105 conntrack commit: ct(commit, zone=65520) for +new+trk, rule IDs (reg5/reg6) -> ct_label
  110 output: output:reg1 if reg0[16]; miss drop

Register layout (same roles as Antrea v0.1.1; values of the source mark as in current Antrea,
so that 0 keeps meaning "not set"):

* ``reg0[0..15]``  packet source, set by the classifier (table 0): 1 = tunnel (``FROM_TUNNEL``),
  2 = gateway gw0 (``FROM_GATEWAY``), 3 = local pod (``FROM_POD``). The policy tables match
  ``FROM_GATEWAY`` to let kubelet probes reach isolated pods.
* ``reg0[16]``     "destination port found": set by L2 forwarding calculation (table 80) together
  with reg1; the output table (110) outputs only packets that have it.
* ``reg0[17]``     hairpin: a pod reaching itself through a Service; output to IN_PORT.
* ``reg0[18..19]`` packet-in reason of a policy flow's ``output:CONTROLLER``: 1 audit log,
  2 reject, 3 both (``PACKET_IN_REASON``).
* ``reg1``         target ofport of the packet (``TARGET_OFPORT``); also the "to" match of
  ingress policy rules (``reg1=<pod ofport>``).
* ``reg3``         endpoint IPv4 address chosen for a Service connection (AntreaProxy).
* ``reg4[0..15]``  endpoint port; ``reg4[16..18]`` endpoint selection state: 1 to select (set
  by the session affinity miss), 2 selected (go DNAT), 3 selected, to learn (affinity).
* ``reg5`` / ``reg6``  conjunction ID of the egress / ingress rule that allowed the packet (set
  by the policy tables); table 105 copies them into ct_label bits 32..63 / 0..31 at commit.

Conntrack: one zone (``CT_ZONE`` = 65520, 0xfff0) for all pod traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address
from typing import Final

from antrea.apis.controlplane.types import Direction
from antrea.ovs.openflow.flow import LoadReg, RegMatch


# -- tables -----------------------------------------------------------------------------------
class Miss(Enum):
    NEXT = "next"
    DROP = "drop"


class Table(int):
    """A table of the pipeline: its number (the value, usable wherever a table id is), its
    name as in Antrea, and what its priority-0 miss flow does."""

    name: str
    miss: Miss
    next: int | None  # the table a NEXT miss goes to

    def __new__(cls, id_: int, name: str, miss: Miss, next_: int | None = None) -> Table:
        self = super().__new__(cls, id_)
        self.name = name
        self.miss = miss
        self.next = next_
        return self

    @property
    def id(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"Table({int(self)}, {self.name!r})"

    __str__ = int.__repr__


CLASSIFIER: Final = Table(0, "Classification", Miss.DROP)
SPOOF_GUARD: Final = Table(10, "SpoofGuard", Miss.DROP)
ARP_RESPONDER: Final = Table(20, "ARPResponder", Miss.DROP)
CONNTRACK: Final = Table(30, "ConntrackZone", Miss.NEXT, 31)
CONNTRACK_STATE: Final = Table(31, "ConntrackState", Miss.NEXT, 40)
# The service tables (AntreaProxy, `antrea.agent.proxy` owns their non-miss flows). 40 is
# resubmitted to from 31 (learned flows cannot go on), whose miss then goes to 41.
SESSION_AFFINITY: Final = Table(40, "SessionAffinity", Miss.NEXT, None)
SERVICE_LB: Final = Table(41, "ServiceLB", Miss.NEXT, 42)
ENDPOINT_DNAT: Final = Table(42, "EndpointDNAT", Miss.NEXT, 45)
# The policy tables: 45/85 Antrea-native rules (`antrea.agent.networkpolicy.antrea_native`),
# 50/60/90/100 Kubernetes NetworkPolicy (`antrea.agent.networkpolicy`), which owns their flows
# except the priority-0 misses (installed by the pipeline so traffic passes without policy).
ANTREA_EGRESS_RULE: Final = Table(45, "AntreaPolicyEgressRule", Miss.NEXT, 50)
EGRESS_RULE: Final = Table(50, "EgressRule", Miss.NEXT, 60)
EGRESS_DEFAULT: Final = Table(60, "EgressDefaultRule", Miss.NEXT, 70)
L3_FORWARDING: Final = Table(70, "L3Forwarding", Miss.NEXT, 80)
L2_FORWARDING_CALC: Final = Table(80, "L2ForwardingCalc", Miss.NEXT, 85)
ANTREA_INGRESS_RULE: Final = Table(85, "AntreaPolicyIngressRule", Miss.NEXT, 90)
INGRESS_RULE: Final = Table(90, "IngressRule", Miss.NEXT, 100)
INGRESS_DEFAULT: Final = Table(100, "IngressDefaultRule", Miss.NEXT, 105)
CONNTRACK_COMMIT: Final = Table(105, "ConntrackCommit", Miss.NEXT, 110)
OUTPUT: Final = Table(110, "Output", Miss.DROP)
# A table no feature uses; a flow there tells whether ovs-vswitchd still holds our flows.
CANARY: Final = Table(250, "Canary", Miss.DROP)
CANARY_TABLE: Final = CANARY

TABLES: Final = (
    CLASSIFIER,
    SPOOF_GUARD,
    ARP_RESPONDER,
    CONNTRACK,
    CONNTRACK_STATE,
    SESSION_AFFINITY,
    SERVICE_LB,
    ENDPOINT_DNAT,
    ANTREA_EGRESS_RULE,
    EGRESS_RULE,
    EGRESS_DEFAULT,
    L3_FORWARDING,
    L2_FORWARDING_CALC,
    ANTREA_INGRESS_RULE,
    INGRESS_RULE,
    INGRESS_DEFAULT,
    CONNTRACK_COMMIT,
    OUTPUT,
)
TABLE_NAMES: Final = {t.id: t.name for t in (*TABLES, CANARY)}
POLICY_TABLES: Final = (
    ANTREA_EGRESS_RULE,
    EGRESS_RULE,
    EGRESS_DEFAULT,
    ANTREA_INGRESS_RULE,
    INGRESS_RULE,
    INGRESS_DEFAULT,
)

# -- priorities -------------------------------------------------------------------------------
PRIORITY_HIGH: Final = 210
PRIORITY_NORMAL: Final = 200
PRIORITY_LOW: Final = 190
PRIORITY_MISS: Final = 0

# The policy tables (50/60/90/100; the Antrea-native tables 45/85 share the bypasses).
PRIO_STALE_SYN: Final = 212  # a SYN reusing a dead connection's 5-tuple is re-evaluated as new
PRIO_METRIC: Final = 211  # per-rule established-packet counters, above the generic bypass
PRIO_BYPASS: Final = PRIORITY_HIGH  # ct_state=-new+est / -new+rel, gateway (kubelet probes)
PRIO_MATCH: Final = PRIORITY_NORMAL  # conjunction clause flows (band b: PRIO_MATCH - b)
PRIO_ISOLATION: Final = PRIORITY_NORMAL  # default-table drops
PRIO_ACTION: Final = PRIORITY_LOW  # conj_id=N action flows (they match conj_id only)
PRIO_MATCH_LOWEST: Final = 101  # the lowest clause band; nothing else in 101..199 of a rule table
MATCH_BANDS: Final = PRIO_MATCH - PRIO_MATCH_LOWEST + 1
PRIO_MISS: Final = PRIORITY_MISS

# The Antrea-native rule tables (45/85; baseline-tier rules in 60/100): each rule at a priority
# of its own in [NATIVE_LO, NATIVE_HI] (baseline: [BASELINE_LO, BASELINE_HI], below the
# Kubernetes isolation drops), the bypasses above every rule. hi + 1 of a table is where a rule
# without a priority drops (fail closed, above all rules).
NATIVE_LO: Final = 1000
NATIVE_HI: Final = 60000
BASELINE_LO: Final = 1
BASELINE_HI: Final = PRIO_ISOLATION - 2
PRIO_NATIVE_STALE_SYN: Final = 64002
PRIO_NATIVE_BYPASS: Final = 64001
# tables 45/85: the last resort's drops (agent/networkpolicy/lastresort.py), above every rule
PRIO_LAST_RESORT: Final = PRIO_NATIVE_BYPASS - 1

# The service tables (41 ServiceLB) and L3 forwarding's noEncap Service return path (70).
PRIORITY_LEARN: Final = PRIORITY_LOW  # 41: learn the affinity flow, then DNAT
PRIORITY_SELECTED: Final = 180  # 41: an endpoint is selected: go DNAT
PRIORITY_NOENCAP_REMOTE: Final = PRIORITY_LOW  # 70: a DNATed host connection back to the host


# -- registers --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegField:
    """Bits ``[start, end]`` of register ``reg``."""

    reg: int
    start: int
    end: int

    def match(self, value: int) -> RegMatch:
        return RegMatch(self.reg, value, self.start, self.end)

    def load(self, value: int) -> LoadReg:
        return LoadReg(self.reg, value, self.start, self.end)

    def nxm(self) -> str:
        """The field as an NXM reference, e.g. ``NXM_NX_REG5[]`` (for move actions)."""
        if self.start == 0 and self.end == 31:
            return f"NXM_NX_REG{self.reg}[]"
        return f"NXM_NX_REG{self.reg}[{self.start}..{self.end}]"


@dataclass(frozen=True, slots=True)
class RegMark:
    """A named value of a register field."""

    field: RegField
    value: int

    def match(self) -> RegMatch:
        return self.field.match(self.value)

    def load(self) -> LoadReg:
        return self.field.load(self.value)


PKT_SOURCE: Final = RegField(0, 0, 15)
FROM_TUNNEL: Final = RegMark(PKT_SOURCE, 1)
FROM_GATEWAY: Final = RegMark(PKT_SOURCE, 2)
FROM_POD: Final = RegMark(PKT_SOURCE, 3)

PORT_FOUND_FIELD: Final = RegField(0, 16, 16)
PORT_FOUND: Final = RegMark(PORT_FOUND_FIELD, 1)
# reg0[17]: a Service connection from a pod to itself (hairpin): output back to IN_PORT.
HAIRPIN: Final = RegMark(RegField(0, 17, 17), 1)
# reg0[16..17] both set: found and hairpin (one match of reg0: ovs-ofctl keeps only the last
# of two matches on the same register)
PORT_FOUND_HAIRPIN: Final = RegMark(RegField(0, 16, 17), 3)

# reg0[18..19]: why a policy flow sends a packet to the agent, its packet-in "custom reason" (as
# upstream's CustomReasonField): the packet-in carries the registers, so the reject responder and
# the audit log tell their packets apart (agent/networkpolicy/reject.py, agent/auditlog.py).
PACKET_IN_REASON: Final = RegField(0, 18, 19)
PACKET_IN_LOG: Final = 1  # audit-logged rule (Allow, Drop, Pass): log it
PACKET_IN_REJECT: Final = 2  # Reject rule: answer it (with PACKET_IN_LOG: and log it)

TARGET_OFPORT: Final = RegField(1, 0, 31)

ENDPOINT_IP: Final = RegField(3, 0, 31)
ENDPOINT_PORT: Final = RegField(4, 0, 15)
EP_STATE: Final = RegField(4, 16, 18)
EP_TO_SELECT: Final = RegMark(EP_STATE, 1)
EP_SELECTED: Final = RegMark(EP_STATE, 2)
EP_TO_LEARN: Final = RegMark(EP_STATE, 3)

EGRESS_RULE_ID: Final = RegField(5, 0, 31)
INGRESS_RULE_ID: Final = RegField(6, 0, 31)

# -- ports, addresses, conntrack --------------------------------------------------------------
# Fixed OpenFlow port numbers (ofport_request), as in Antrea.
TUNNEL_OFPORT: Final = 1
GATEWAY_OFPORT: Final = 2

# Destination MAC of every packet sent through the tunnel, and the MAC the ARP responder
# answers with for remote gateways (Antrea's globalVirtualMAC).
GLOBAL_VIRTUAL_MAC: Final = "aa:bb:cc:dd:ee:ff"

CT_ZONE: Final = 0xFFF0  # 65520
# Hairpin Service connections are SNATed to this address in their own zone, so that the pod
# sees the connection come from elsewhere (and answers through OVS).
SNAT_CT_ZONE: Final = 0xFFF1  # 65521
HAIRPIN_SNAT_IP: Final = IPv4Address("169.254.0.252")

# ct_mark bit of connections DNATed to a Service endpoint (committed in table 42).
SERVICE_CT_MARK: Final = 0x1
# ct_label bits of the rule IDs committed by table 105 (EGRESS_RULE_ID / INGRESS_RULE_ID).
EGRESS_LABEL_SHIFT: Final = 32
INGRESS_LABEL_SHIFT: Final = 0


# -- the policy tables per direction ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DirectionTables:
    """The tables and registers of one policy direction.

    An allowed packet jumps *over* its direction's default table: egress to 70 (L3
    forwarding), ingress to 105 (conntrack commit), so a new connection is committed only
    after the ingress checks.
    """

    rule_table: Table
    default_table: Table
    allow_goto: Table  # where an allowed packet goes (past the default table)
    conj_reg: RegField  # the allowing rule's conjunction ID (-> ct_label at commit)
    label_shift: int  # the rule's bits in ct_label


EGRESS: Final = DirectionTables(
    EGRESS_RULE, EGRESS_DEFAULT, L3_FORWARDING, EGRESS_RULE_ID, EGRESS_LABEL_SHIFT
)
INGRESS: Final = DirectionTables(
    INGRESS_RULE, INGRESS_DEFAULT, CONNTRACK_COMMIT, INGRESS_RULE_ID, INGRESS_LABEL_SHIFT
)


def tables_for(direction: Direction) -> DirectionTables:
    return INGRESS if direction is Direction.IN else EGRESS
