"""AntreaProxy's flows and groups (tables 40-42 of the pipeline; docs/design/ovs-pipeline.md).

Per Service port with endpoints (owner ``("service", ns, name, port name, protocol)``):

* 41 ServiceLB, priority 200: a new connection to ClusterIP:port that still has to pick an
  endpoint (``reg4[16..18]=1``) -> mark "selected" (or "to learn" with ClientIP affinity), then
  the Service's select group. Each bucket of the group loads one endpoint (``reg3`` = IP,
  ``reg4[0..15]`` = port) and resubmits to 41.
* 41, priority 190 (affinity only): "to learn" -> ``learn`` a flow into table 40 (client IP,
  ClusterIP, port -> the same endpoint, ``idle_timeout`` = the affinity timeout), mark
  "selected", go to 42. Later connections of the client hit the learned flow in 40 (resubmitted
  to from 31) and skip the group.
* NodePort: the same flows for (virtual NodePort address, nodePort): the host DNATs traffic to
  its own addresses' nodePort there and routes it into gw0 (`nodeport`); for
  externalTrafficPolicy Local with a group of the local endpoints only.

Shared (owner ``("proxy",)``): 41 priority 180: "selected" -> 42. noEncap only
(`noencap_flows`): 70 priority 190, a Service connection from the host (gw0, to the virtual MAC)
whose endpoint is not a local pod (a remote endpoint's request, and its un-DNATed reply): back
out gw0 (``IN_PORT``, with gw0's MAC) for the host to route over the underlay.
Per endpoint (owner ``("endpoint", ip, port, protocol)``, shared by the Services using it):
42 EndpointDNAT: ``ct(commit, zone, nat(dst=ip:port), exec(ct_mark=service))`` then 45, so the
policy tables see the endpoint (after DNAT), and table 105 does not commit again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from antrea.agent.openflow.pipeline import (
    ANTREA_EGRESS_RULE,
    CT_ZONE,
    ENDPOINT_DNAT,
    ENDPOINT_IP,
    ENDPOINT_PORT,
    EP_SELECTED,
    EP_STATE,
    EP_TO_LEARN,
    EP_TO_SELECT,
    FROM_GATEWAY,
    GLOBAL_VIRTUAL_MAC,
    HAIRPIN,
    L2_FORWARDING_CALC,
    L3_FORWARDING,
    PRIORITY_LEARN,
    PRIORITY_NOENCAP_REMOTE,
    PRIORITY_NORMAL,
    PRIORITY_SELECTED,
    SERVICE_CT_MARK,
    SERVICE_LB,
    SESSION_AFFINITY,
)
from antrea.agent.proxy.types import Endpoint, ServicePort
from antrea.ovs.openflow.flow import (
    Action,
    Ct,
    CtState,
    Flow,
    GotoTable,
    Learn,
    LearnSpec,
    Match,
    OutputGroup,
    Proto,
    RegMatch,
    Resubmit,
    SetField,
)
from antrea.ovs.openflow.groups import Bucket, Group, GroupType

NEW = CtState(new=True, trk=True)
# learn: field names per protocol for the learned flow's destination-port match
_DST_PORT = {"tcp": "NXM_OF_TCP_DST[]", "udp": "NXM_OF_UDP_DST[]", "sctp": "OXM_OF_SCTP_DST[]"}
_IP_PROTO = {"tcp": 6, "udp": 17, "sctp": 132}


# NodePort traffic DNATed here by the host (SNATed)
NODEPORT_CLUSTER_IP = ipaddress.IPv4Address("169.254.0.250")
NODEPORT_LOCAL_IP = ipaddress.IPv4Address("169.254.0.249")  # ... externalTrafficPolicy: Local
NODEPORT_SNAT_IP = "169.254.0.251"  # noEncap: Cluster traffic SNATed here by the host
NODEPORT_ROUTE = "169.254.0.248/30"

Frontend = tuple[ipaddress.IPv4Address, int, int]  # address, port, group id


def frontends(sp: ServicePort, group_id: int, local_group_id: int | None) -> list[Frontend]:
    """Where the Service port answers: ClusterIP:port (its group) and, for a NodePort, the
    host's virtual NodePort address:nodePort -- the local endpoints' group for
    externalTrafficPolicy Local (None: no local endpoint, no NodePort frontend)."""
    out = [(sp.cluster_ip, sp.port, group_id)]
    if sp.node_port:
        if not sp.external_local:
            out.append((NODEPORT_CLUSTER_IP, sp.node_port, group_id))
        elif local_group_id is not None:
            out.append((NODEPORT_LOCAL_IP, sp.node_port, local_group_id))
    return out


def service_flows(sp: ServicePort, fronts: Sequence[Frontend], cookie: int) -> list[Flow]:
    flows: list[Flow] = []
    mark = EP_TO_LEARN if sp.affinity_timeout else EP_SELECTED
    for addr, port, group_id in fronts:
        match = Match(
            proto=sp.proto, regs=(EP_TO_SELECT.match(),), ct_state=NEW, nw_dst=addr, tp_dst=port
        )
        flows.append(
            Flow(
                SERVICE_LB.id, PRIORITY_NORMAL, match, (mark.load(), OutputGroup(group_id)), cookie
            )
        )
        if sp.affinity_timeout:
            learn = Learn(
                table=SESSION_AFFINITY.id,
                priority=PRIORITY_NORMAL,
                idle_timeout=sp.affinity_timeout,
                cookie=cookie,
                eth_type=0x800,
                ip_proto=_IP_PROTO[sp.proto],
                specs=(
                    LearnSpec("match", _DST_PORT[sp.proto]),
                    LearnSpec("match", "NXM_OF_IP_DST[]"),
                    LearnSpec("match", "NXM_OF_IP_SRC[]"),
                    LearnSpec("load", ENDPOINT_IP.nxm(), ENDPOINT_IP.nxm()),
                    LearnSpec("load", ENDPOINT_PORT.nxm(), ENDPOINT_PORT.nxm()),
                    LearnSpec("load", EP_STATE.nxm(), value=EP_SELECTED.value),
                ),
            )
            flows.append(
                Flow(
                    SERVICE_LB.id,
                    PRIORITY_LEARN,
                    Match(proto=sp.proto, regs=(EP_TO_LEARN.match(),), nw_dst=addr, tp_dst=port),
                    (learn, EP_SELECTED.load(), GotoTable(ENDPOINT_DNAT.id)),
                    cookie,
                )
            )
    return flows


def shared_flows(cookie: int) -> list[Flow]:
    return [
        Flow(
            SERVICE_LB.id,
            PRIORITY_SELECTED,
            Match(regs=(EP_SELECTED.match(),)),
            (GotoTable(ENDPOINT_DNAT.id),),
            cookie,
        )
    ]


def noencap_flows(gateway_mac: str, cookie: int) -> list[Flow]:
    """noEncap: br-int has no tunnel; a host Service connection (NodePort) DNATed to an endpoint
    on another node goes back to the host (IN_PORT) with gw0's MAC, and so does its reply once
    un-DNATed. Local pods' flows (priority 200, ``nw_dst=<pod IP>``) take precedence."""
    match = Match(
        proto=Proto.IP,
        regs=(FROM_GATEWAY.match(),),
        ct_mark=(SERVICE_CT_MARK, SERVICE_CT_MARK),
        dl_dst=GLOBAL_VIRTUAL_MAC,
    )
    actions = (
        SetField("eth_src", GLOBAL_VIRTUAL_MAC),
        SetField("eth_dst", gateway_mac),
        HAIRPIN.load(),
        GotoTable(L2_FORWARDING_CALC.id),
    )
    return [Flow(L3_FORWARDING.id, PRIORITY_NOENCAP_REMOTE, match, actions, cookie)]


def endpoint_flow(ep: Endpoint, proto: Proto, cookie: int) -> Flow:
    actions: tuple[Action, ...] = (
        Ct(
            commit=True,
            table=ANTREA_EGRESS_RULE.id,
            zone=CT_ZONE,
            nat_dst=(str(ep.ip), ep.port),
            exec_=(SetField("ct_mark", f"{SERVICE_CT_MARK:#x}"),),
        ),
    )
    # port (reg4[0..15]) and state (reg4[16..18]) as ONE match of reg4: ovs-ofctl keeps only
    # the last of two matches on the same register.
    state = EP_SELECTED.value << (EP_STATE.start - ENDPOINT_PORT.start)
    reg4 = RegMatch(ENDPOINT_PORT.reg, state | ep.port, ENDPOINT_PORT.start, EP_STATE.end)
    match = Match(proto=proto, regs=(ENDPOINT_IP.match(int(ep.ip)), reg4))
    return Flow(ENDPOINT_DNAT.id, PRIORITY_NORMAL, match, actions, cookie)


def service_group(group_id: int, endpoints: Iterable[Endpoint]) -> Group:
    """A select group, one bucket per endpoint (sorted: the same set gives the same group)."""
    buckets = tuple(
        Bucket(
            (
                ENDPOINT_IP.load(int(ep.ip)),
                ENDPOINT_PORT.load(ep.port),
                Resubmit(SERVICE_LB.id),
            ),
            weight=100,
        )
        for ep in sorted(endpoints)
    )
    return Group(group_id, GroupType.SELECT, buckets)
