"""Builders for control-plane objects, shared by unit tests, integration tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    ControlPlaneObject,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NamedPort,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    Service,
)
from antrea.ovs.openflow.flow import Flow

__all__ = [
    "ANY",
    "BOOKMARK",
    "RESTART",
    "AddressGroup",
    "AppliedToGroup",
    "IPBlock",
    "added",
    "deleted",
    "egress",
    "feed",
    "flows_allow",
    "ingress",
    "member",
    "modified",
    "policy",
    "tcp",
    "udp",
]


def member(
    ns: str, name: str, ip: str, *ports: tuple[str, str, int], node: str = ""
) -> GroupMember:
    return GroupMember(
        PodReference(ns, name),
        (ip,),
        node,
        tuple(NamedPort(n, Protocol(p), num) for n, p, num in ports),
    )


def policy(
    name: str,
    rules: Iterable[NetworkPolicyRule],
    applied_to: Iterable[str],
    *,
    generation: int = 1,
    namespace: str = "x",
) -> NetworkPolicy:
    return NetworkPolicy(
        name=name,
        source_ref=NetworkPolicyReference("K8sNetworkPolicy", namespace, f"np-{name}", name),
        rules=tuple(rules),
        applied_to_groups=tuple(applied_to),
        generation=generation,
    )


def ingress(
    *,
    groups: Iterable[str] = (),
    blocks: Iterable[IPBlock] = (),
    services: Iterable[Service] | None = None,
) -> NetworkPolicyRule:
    return NetworkPolicyRule(
        Direction.IN,
        from_=NetworkPolicyPeer(tuple(groups), tuple(blocks)),
        services=None if services is None else tuple(services),
    )


def egress(
    *,
    groups: Iterable[str] = (),
    blocks: Iterable[IPBlock] = (),
    services: Iterable[Service] | None = None,
) -> NetworkPolicyRule:
    return NetworkPolicyRule(
        Direction.OUT,
        to=NetworkPolicyPeer(tuple(groups), tuple(blocks)),
        services=None if services is None else tuple(services),
    )


def tcp(port: int | str | None = None, end_port: int | None = None) -> Service:
    return Service(Protocol.TCP, port, end_port)


def udp(port: int | str | None = None) -> Service:
    return Service(Protocol.UDP, port)


ANY = IPBlock("0.0.0.0/0")


def added(obj: ControlPlaneObject) -> WatchEvent:
    return WatchEvent(EventType.ADDED, _kind(obj), obj)


def modified(obj: ControlPlaneObject) -> WatchEvent:
    return WatchEvent(EventType.MODIFIED, _kind(obj), obj)


def deleted(obj: ControlPlaneObject) -> WatchEvent:
    return WatchEvent(EventType.DELETED, _kind(obj), obj)


BOOKMARK = WatchEvent(EventType.BOOKMARK)
RESTART = WatchEvent(EventType.ERROR, message="stream-restart")


def _kind(obj: ControlPlaneObject) -> Kind:
    if isinstance(obj, NetworkPolicy):
        return Kind.NETWORK_POLICY
    if isinstance(obj, AddressGroup):
        return Kind.ADDRESS_GROUP
    assert isinstance(obj, AppliedToGroup)
    return Kind.APPLIED_TO_GROUP


async def feed(events: Iterable[WatchEvent]) -> AsyncIterator[WatchEvent]:
    for ev in events:
        yield ev


def flows_allow(
    flows: Iterable[Flow],
    *,
    src_ip: str,
    dst_ip: str,
    dst_ofport: int | None,
    proto: str,
    port: int,
    src_local: bool = True,
) -> bool:
    """Whether the policy tables in `flows` let a new connection through (`ovs.openflow.sim`).

    Egress (table 50 -> 70) is checked when the source is a local pod, ingress (90 -> 105,
    with reg1 = the destination's ofport) when the destination is one (`dst_ofport`).
    """
    from antrea.agent.openflow import pipeline as p
    from antrea.ovs.openflow.sim import FlowTables, Packet

    sim = FlowTables(flows, p.POLICY_TABLES)
    # Antrea-native tables first when the flows have them (standalone: they have misses).
    first_out = p.ANTREA_EGRESS_RULE if sim.by_table.get(p.ANTREA_EGRESS_RULE) else p.EGRESS_RULE
    first_in = p.ANTREA_INGRESS_RULE if sim.by_table.get(p.ANTREA_INGRESS_RULE) else p.INGRESS_RULE
    if src_local:
        v = sim.run(first_out, Packet(proto, src_ip, dst_ip, port))
        if v.dropped or v.table != p.L3_FORWARDING:
            return False
    if dst_ofport is not None:
        pkt = Packet(proto, src_ip, dst_ip, port, regs={p.TARGET_OFPORT.reg: dst_ofport})
        v = sim.run(first_in, pkt)
        if v.dropped or v.table != p.CONNTRACK_COMMIT:
            return False
    return True
