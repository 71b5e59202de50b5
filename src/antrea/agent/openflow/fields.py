"""Registers, marks and constants of the pipeline, named once.

Register layout (same roles as Antrea v0.1.1; values of the source mark as in current Antrea,
so that 0 keeps meaning "not set"):

* ``reg0[0..15]``  packet source, set by the classifier (table 0):
  1 = tunnel (``FROM_TUNNEL``), 2 = gateway gw0 (``FROM_GATEWAY``), 3 = local pod
  (``FROM_POD``).
  The policy tables match ``FROM_GATEWAY`` to let kubelet probes reach isolated pods.
* ``reg0[16]``     "destination port found": set by L2 forwarding calculation (table 80) together
  with reg1; the output table (110) outputs only packets that have it.
* ``reg0[17]``     hairpin: a pod reaching itself through a Service; output to IN_PORT.
* ``reg1``         target ofport of the packet (``TARGET_OFPORT``); also the "to" match of ingress
  policy rules (``reg1=<pod ofport>``).
* ``reg5`` / ``reg6``  conjunction ID of the egress / ingress rule that allowed the packet (set by
  the policy tables); table 105 copies them into ct_label bits 32..63 / 0..31 when it commits.

* ``reg3``         endpoint IPv4 address chosen for a Service connection (AntreaProxy).
* ``reg4[0..15]``  endpoint port; ``reg4[16..18]`` endpoint selection state: 1 to select (set
  by the session affinity miss), 2 selected (go DNAT), 3 selected, to learn (affinity).

Conntrack: one zone (``CT_ZONE`` = 65520, 0xfff0) for all pod traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from antrea.ovs.openflow.flow import LoadReg, RegMatch

# Fixed OpenFlow port numbers (ofport_request), as in Antrea.
TUNNEL_OFPORT = 1
GATEWAY_OFPORT = 2

# Destination MAC of every packet sent through the tunnel, and the MAC the ARP responder
# answers with for remote gateways (Antrea's globalVirtualMAC).
GLOBAL_VIRTUAL_MAC = "aa:bb:cc:dd:ee:ff"

CT_ZONE = 0xFFF0  # 65520


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


PKT_SOURCE = RegField(0, 0, 15)
FROM_TUNNEL = RegMark(PKT_SOURCE, 1)
FROM_GATEWAY = RegMark(PKT_SOURCE, 2)
FROM_POD = RegMark(PKT_SOURCE, 3)

PORT_FOUND_FIELD = RegField(0, 16, 16)
PORT_FOUND = RegMark(PORT_FOUND_FIELD, 1)
# reg0[17]: a Service connection from a pod to itself (hairpin): output back to IN_PORT.
HAIRPIN = RegMark(RegField(0, 17, 17), 1)
# reg0[16..17] both set: found and hairpin (one match of reg0: ovs-ofctl keeps only the last
# of two matches on the same register)
PORT_FOUND_HAIRPIN = RegMark(RegField(0, 16, 17), 3)

TARGET_OFPORT = RegField(1, 0, 31)

ENDPOINT_IP = RegField(3, 0, 31)
ENDPOINT_PORT = RegField(4, 0, 15)
EP_STATE = RegField(4, 16, 18)
EP_TO_SELECT = RegMark(EP_STATE, 1)
EP_SELECTED = RegMark(EP_STATE, 2)
EP_TO_LEARN = RegMark(EP_STATE, 3)

# Hairpin Service connections are SNATed to this address in their own zone, so that the pod
# sees the connection come from elsewhere (and answers through OVS).
SNAT_CT_ZONE = 0xFFF1  # 65521
HAIRPIN_SNAT_IP = "169.254.0.252"

# ct_mark bit of connections DNATed to a Service endpoint (committed in table 42).
SERVICE_CT_MARK = 0x1

EGRESS_RULE_ID = RegField(5, 0, 31)
INGRESS_RULE_ID = RegField(6, 0, 31)
