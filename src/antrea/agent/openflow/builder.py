"""Flow builders of the pipeline's own flows: its fixed part, gw0, tun0, local pods, remote nodes.

Tables, registers and priorities come from `antrea.agent.openflow.pipeline` (the one place they
are defined). Read docs/design/ovs-pipeline.md for a table-by-table walk with real dump-flows
excerpts.

How to add a flow: write a small builder here that returns ``list[Flow]`` built from the named
tables and marks of `pipeline` (never bare numbers elsewhere), give it to the `FlowClient` under
the owner that produces it (`antrea.agent.owners`: ``BaseOwner.*``, ``PodOwner``, ``NodeOwner``).
The owner's complete flow set is stated at once; the client sends one bundle of deltas.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from antrea.agent.openflow.pipeline import (
    ANTREA_INGRESS_RULE,
    ARP_RESPONDER,
    CANARY,
    CLASSIFIER,
    CONNTRACK,
    CONNTRACK_COMMIT,
    CONNTRACK_STATE,
    CT_ZONE,
    EGRESS_RULE_ID,
    EP_TO_SELECT,
    FROM_GATEWAY,
    FROM_POD,
    FROM_TUNNEL,
    GATEWAY_OFPORT,
    GLOBAL_VIRTUAL_MAC,
    HAIRPIN,
    HAIRPIN_SNAT_IP,
    INGRESS_RULE_ID,
    L2_FORWARDING_CALC,
    L3_FORWARDING,
    OUTPUT,
    PORT_FOUND,
    PORT_FOUND_HAIRPIN,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MISS,
    PRIORITY_NORMAL,
    SERVICE_CT_MARK,
    SERVICE_LB,
    SESSION_AFFINITY,
    SNAT_CT_ZONE,
    SPOOF_GUARD,
    TABLES,
    TARGET_OFPORT,
    TUNNEL_OFPORT,
    Miss,
)
from antrea.ovs.openflow.cookie import Category, make_cookie
from antrea.ovs.openflow.flow import (
    Action,
    Ct,
    CtState,
    DecTTL,
    Drop,
    Flow,
    GotoTable,
    Match,
    Move,
    Normal,
    Output,
    OutputReg,
    Proto,
    Resubmit,
    SetField,
)

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What the flow builders need to know about this node."""

    pod_cidr: IPv4Net
    gateway_ip: IPv4Addr
    gateway_mac: str
    encap: bool = True


@dataclass(frozen=True, slots=True)
class PodPort:
    """A local pod's attachment, as the pod flows need it."""

    ofport: int
    ip: IPv4Addr
    mac: str


class FlowBuilder:
    """Builds this node's flows; every cookie carries the agent's current round."""

    def __init__(self, node: NodeConfig, *, round_num: int) -> None:
        self.node = node
        self.round_num = round_num

    def cookie(self, category: Category, object_id: int = 0) -> int:
        return make_cookie(self.round_num, category, object_id)

    # -- the fixed part of the pipeline ----------------------------------------------------
    def pipeline_flows(self) -> list[Flow]:
        """Miss flows of every table plus conntrack, commit and output (owner "pipeline")."""
        c = self.cookie(Category.DEFAULT)
        flows: list[Flow] = []
        for table in TABLES:
            if table is CONNTRACK_STATE:
                actions: tuple[Action, ...] = (
                    Resubmit(SESSION_AFFINITY.id),
                    GotoTable(SERVICE_LB.id),
                )
            elif table is SESSION_AFFINITY:
                actions = (EP_TO_SELECT.load(),)
            elif table.miss is Miss.NEXT and table.next is not None:
                actions = (GotoTable(table.next),)
            else:
                actions = (Drop(),)
            flows.append(Flow(table.id, PRIORITY_MISS, Match(), actions, c))
        flows += [
            # Other ARP (pod <-> pod, pod <-> gateway) is switched: pods of a node share an L2.
            Flow(ARP_RESPONDER.id, PRIORITY_LOW, Match(proto=Proto.ARP), (Normal(),), c),
            # Replies of hairpin Service connections: un-SNAT in their zone first, then (back in
            # this table, now tracked) the pod zone's un-DNAT.
            Flow(
                CONNTRACK.id,
                PRIORITY_HIGH,
                Match(proto=Proto.IP, ct_state=CtState(trk=False), nw_dst=HAIRPIN_SNAT_IP),
                (HAIRPIN.load(), Ct(table=CONNTRACK.id, zone=SNAT_CT_ZONE, nat=True)),
                c,
            ),
            Flow(
                CONNTRACK.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP),
                (Ct(table=CONNTRACK_STATE.id, zone=CT_ZONE, nat=True),),
                c,
            ),
            Flow(
                CONNTRACK_STATE.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP, ct_state=CtState(inv=True, trk=True)),
                (Drop(),),
                c,
            ),
            # Service connections were committed with their DNAT (table 42): not again.
            Flow(
                CONNTRACK_COMMIT.id,
                PRIORITY_HIGH,
                Match(
                    proto=Proto.IP,
                    ct_state=CtState(new=True, trk=True),
                    ct_mark=(SERVICE_CT_MARK, SERVICE_CT_MARK),
                ),
                (GotoTable(OUTPUT.id),),
                c,
            ),
            # Commit only after the ingress checks: a dropped first packet creates no state.
            # The rule IDs the policy tables left in reg5/reg6 go into ct_label (per-rule stats).
            Flow(
                CONNTRACK_COMMIT.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP, ct_state=CtState(new=True, trk=True)),
                (
                    Ct(
                        commit=True,
                        zone=CT_ZONE,
                        exec_=(
                            Move(EGRESS_RULE_ID.nxm(), "NXM_NX_CT_LABEL[32..63]"),
                            Move(INGRESS_RULE_ID.nxm(), "NXM_NX_CT_LABEL[0..31]"),
                        ),
                    ),
                    GotoTable(OUTPUT.id),
                ),
                c,
            ),
            Flow(
                OUTPUT.id,
                PRIORITY_NORMAL,
                Match(regs=(PORT_FOUND.match(),)),
                (OutputReg(TARGET_OFPORT.reg),),
                c,
            ),
            # Hairpin: the target port is the input port (plain output to it does nothing).
            Flow(
                OUTPUT.id,
                PRIORITY_HIGH,
                Match(regs=(PORT_FOUND_HAIRPIN.match(),)),
                (Output("IN_PORT"),),
                c,
            ),
        ]
        return flows

    def canary_flow(self) -> Flow:
        return Flow(CANARY.id, PRIORITY_MISS, Match(), (Drop(),), self.cookie(Category.DEFAULT))

    def gateway_flows(self) -> list[Flow]:
        """Classifier, spoof guard, L3 and L2 flows of gw0 (owner "gateway")."""
        c = self.cookie(Category.POD_CONNECTIVITY)
        node = self.node
        flows = [
            Flow(
                CLASSIFIER.id,
                PRIORITY_NORMAL,
                Match(in_port=GATEWAY_OFPORT),
                (FROM_GATEWAY.load(), GotoTable(SPOOF_GUARD.id)),
                c,
            ),
            # The host may use any source address (node IP, service traffic): unchecked.
            Flow(
                SPOOF_GUARD.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP, in_port=GATEWAY_OFPORT),
                (GotoTable(CONNTRACK.id),),
                c,
            ),
            Flow(
                SPOOF_GUARD.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.ARP, in_port=GATEWAY_OFPORT),
                (GotoTable(ARP_RESPONDER.id),),
                c,
            ),
            l2_forward_calc_flow(node.gateway_mac, GATEWAY_OFPORT, c),
        ]
        if node.encap:
            # Remote pods reaching this node's host (e.g. probes answered by the gateway).
            flows.append(
                Flow(
                    L3_FORWARDING.id,
                    PRIORITY_NORMAL,
                    Match(proto=Proto.IP, regs=(FROM_TUNNEL.match(),), nw_dst=node.gateway_ip),
                    (SetField("eth_dst", node.gateway_mac), GotoTable(L2_FORWARDING_CALC.id)),
                    c,
                )
            )
        return flows

    def tunnel_flows(self) -> list[Flow]:
        """Classifier and L2 flows of tun0 (owner "tunnel"; encap mode only)."""
        c = self.cookie(Category.POD_CONNECTIVITY)
        return [
            # Traffic from other nodes was checked by their spoof guard: straight to conntrack.
            Flow(
                CLASSIFIER.id,
                PRIORITY_NORMAL,
                Match(in_port=TUNNEL_OFPORT),
                (FROM_TUNNEL.load(), GotoTable(CONNTRACK.id)),
                c,
            ),
            l2_forward_calc_flow(GLOBAL_VIRTUAL_MAC, TUNNEL_OFPORT, c),
        ]

    # -- per local pod -----------------------------------------------------------------
    def pod_flows(self, pod: PodPort) -> list[Flow]:
        """Everything one local pod needs (owner ``PodOwner(container_id)``)."""
        c = self.cookie(Category.POD_CONNECTIVITY, pod.ofport)
        ip = pod.ip
        flows = [
            Flow(
                CLASSIFIER.id,
                PRIORITY_LOW,
                Match(in_port=pod.ofport),
                (FROM_POD.load(), GotoTable(SPOOF_GUARD.id)),
                c,
            ),
            Flow(
                SPOOF_GUARD.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP, in_port=pod.ofport, dl_src=pod.mac, nw_src=ip),
                (GotoTable(CONNTRACK.id),),
                c,
            ),
            Flow(
                SPOOF_GUARD.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.ARP, in_port=pod.ofport, arp_spa=ip, arp_sha=pod.mac),
                (GotoTable(ARP_RESPONDER.id),),
                c,
            ),
            l2_forward_calc_flow(pod.mac, pod.ofport, c),
            # A Service DNATed the pod's connection to itself (hairpin): SNAT it to a virtual
            # address in its own zone, mark hairpin, and come back here.
            Flow(
                L3_FORWARDING.id,
                PRIORITY_HIGH,
                Match(
                    proto=Proto.IP,
                    ct_mark=(SERVICE_CT_MARK, SERVICE_CT_MARK),
                    nw_src=ip,
                    nw_dst=ip,
                ),
                (
                    HAIRPIN.load(),
                    Ct(
                        commit=True,
                        table=L3_FORWARDING.id,
                        zone=SNAT_CT_ZONE,
                        nat_src=str(HAIRPIN_SNAT_IP),
                        exec_=(SetField("ct_mark", f"{SERVICE_CT_MARK:#x}"),),
                    ),
                ),
                c,
            ),
            # A Service connection DNATed to this pod: its packets were sent to the gateway's
            # (or, from the host, the virtual) MAC: deliver.
            Flow(
                L3_FORWARDING.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP, ct_mark=(SERVICE_CT_MARK, SERVICE_CT_MARK), nw_dst=ip),
                (
                    SetField("eth_src", self.node.gateway_mac),
                    SetField("eth_dst", pod.mac),
                    DecTTL(),
                    GotoTable(L2_FORWARDING_CALC.id),
                ),
                c,
            ),
        ]
        if self.node.encap:
            # From the tunnel (dst MAC is the virtual MAC): route to the pod on this node.
            flows.append(
                Flow(
                    L3_FORWARDING.id,
                    PRIORITY_NORMAL,
                    Match(proto=Proto.IP, regs=(FROM_TUNNEL.match(),), nw_dst=ip),
                    (
                        SetField("eth_src", self.node.gateway_mac),
                        SetField("eth_dst", pod.mac),
                        DecTTL(),
                        GotoTable(L2_FORWARDING_CALC.id),
                    ),
                    c,
                )
            )
        return flows

    # -- per remote node ---------------------------------------------------------------
    def node_flows(
        self, *, pod_cidr: IPv4Net, gateway_ip: IPv4Addr, node_ip: IPv4Addr
    ) -> list[Flow]:
        """Flows for one remote node (owner ``NodeOwner(name)``); none in noEncap mode.

        noEncap traffic leaves through gw0 (L2 calc sends gateway-MAC traffic there) and the
        node's routing table carries it to the remote node.
        """
        if not self.node.encap:
            return []
        c = self.cookie(Category.NODE_ROUTE)
        return [
            arp_responder_flow(gateway_ip, GLOBAL_VIRTUAL_MAC, c),
            Flow(
                L3_FORWARDING.id,
                PRIORITY_NORMAL,
                Match(proto=Proto.IP, nw_dst=pod_cidr),
                (
                    DecTTL(),
                    SetField("eth_src", self.node.gateway_mac),
                    SetField("eth_dst", GLOBAL_VIRTUAL_MAC),
                    SetField("tun_dst", str(node_ip)),
                    GotoTable(L2_FORWARDING_CALC.id),
                ),
                c,
            ),
        ]


def l2_forward_calc_flow(mac: str, ofport: int, cookie: int) -> Flow:
    """dst MAC -> reg1 = ofport, reg0[16] = 1 (the "dmac" table)."""
    return Flow(
        L2_FORWARDING_CALC.id,
        PRIORITY_NORMAL,
        Match(dl_dst=mac),
        (TARGET_OFPORT.load(ofport), PORT_FOUND.load(), GotoTable(ANTREA_INGRESS_RULE.id)),
        cookie,
    )


def arp_responder_flow(ip: IPv4Addr, mac: str, cookie: int) -> Flow:
    """Answer ARP requests for `ip` with `mac`, sending the reply back where it came from."""
    return Flow(
        ARP_RESPONDER.id,
        PRIORITY_NORMAL,
        Match(proto=Proto.ARP, arp_op=1, arp_tpa=ip),
        (
            Move("NXM_OF_ETH_SRC[]", "NXM_OF_ETH_DST[]"),
            SetField("eth_src", mac),
            SetField("arp_op", "2"),
            Move("NXM_NX_ARP_SHA[]", "NXM_NX_ARP_THA[]"),
            SetField("arp_sha", mac),
            Move("NXM_OF_ARP_SPA[]", "NXM_OF_ARP_TPA[]"),
            SetField("arp_spa", str(ip)),
            Output("IN_PORT"),
        ),
        cookie,
    )
