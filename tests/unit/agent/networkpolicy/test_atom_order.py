"""`atom_key`: one total order over clause atoms of every kind, and flows that do not depend on
the order a rule lists its services and peers in.

Atoms mix None and ints in the same positions (``("tcp", 80, None)`` a port,
``("tcp", 80, 0xFFF0)`` a range from 80, ``("tcp", None, None)`` every port,
``("icmp_tc", 8, None)`` any code), so plain tuple order raises on them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy.cache import RuleCache
from antrea.agent.networkpolicy.conjunctions import ANY, Atom, atom_key, atom_match
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.apis.controlplane.types import (
    IPBlock,
    PodReference,
    Protocol,
    RuleAction,
    Service,
)
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.render import render_flow
from antrea.testbed.controlplane import AppliedToGroup, added, ingress, member, policy
from antrea.testbed.openflow import RecordingTransport

PROTOS = ("tcp", "udp", "sctp")
port = st.integers(0, 65535)
mask = st.sampled_from([None, 0xFFFF, 0xFFF0, 0xFF00, 0x8000, 0xFFFE])
atoms: st.SearchStrategy[Atom] = st.one_of(
    st.tuples(st.sampled_from(PROTOS), port, mask),  # ports and masked ranges
    st.tuples(st.sampled_from(PROTOS), st.none(), st.none()),  # protocol, every port
    st.tuples(st.just("icmp_tc"), st.integers(0, 255), st.none() | st.integers(0, 255)),
    st.tuples(
        st.sampled_from(["nw_src", "nw_dst"]), st.integers(0, 2**32 - 1), st.integers(1, 32)
    ).map(lambda a: (a[0], a[1] >> (32 - a[2]) << (32 - a[2]), a[2])),  # canonical prefixes
    st.just(ANY),  # a /0 peer
    st.tuples(st.just("reg1"), st.integers(1, 1 << 15)),
)


@given(st.lists(atoms, max_size=40), st.randoms(use_true_random=False))
def test_atom_order_is_total_and_independent_of_input_order(
    some: list[Atom], rnd: random.Random
) -> None:
    ordered = sorted(some, key=atom_key)  # never raises
    shuffled = list(some)
    rnd.shuffle(shuffled)
    assert sorted(shuffled, key=atom_key) == ordered
    assert len({atom_key(a) for a in some}) == len(set(some))  # distinct atoms, distinct keys
    for a in set(some):
        atom_match(a)  # every generated atom is one the planner can build a flow from


A = member("x", "a", "10.244.1.10")
OFPORTS = {("x", "a"): 3}


def _ofport(pod: PodReference) -> int | None:
    return OFPORTS.get((pod.namespace, pod.name))


# Few distinct ports and protocols, so a rule often mixes a port, a range from the same port
# and the whole protocol (the atoms plain tuple order cannot compare).
svc_port = st.sampled_from([0, 80, 88, 95, 443, 65535])
tcp_udp = st.sampled_from([Protocol.TCP, Protocol.UDP])
icmp_tc = st.none().map(lambda _: (None, None)) | st.tuples(
    st.sampled_from([0, 8]), st.none() | st.sampled_from([0, 1])
)
services = st.one_of(
    st.builds(Service, tcp_udp, svc_port),
    st.builds(Service, tcp_udp, svc_port, svc_port),  # endPort (below the port: the port)
    st.builds(Service, st.sampled_from([Protocol.TCP, Protocol.UDP, Protocol.SCTP])),
    icmp_tc.map(lambda tc: Service(Protocol.ICMP, None, None, *tc)),
)
blocks = st.sampled_from(
    [IPBlock("0.0.0.0/0"), IPBlock("10.0.0.0/8"), IPBlock("10.0.0.0/16"),
     IPBlock("192.168.1.0/24", ("192.168.1.128/25",)), IPBlock("10.244.3.10/32")]
)  # fmt: skip


def _realize(kind: str, svcs: list[Service], peers: list[IPBlock]) -> tuple[list[str], list[str]]:
    """(the rule's own flows in order (Antrea-native) or [], every installed flow sorted)."""
    rt = RecordingTransport()
    rec = PolicyReconciler(FlowClient(rt), round_num=1, ofport_of=_ofport, install_miss_flows=True)
    cache = RuleCache()
    cache.apply(added(AppliedToGroup("atg-a", frozenset({A}))))
    rule = ingress(blocks=peers, services=svcs)
    pol = policy("p", [rule], ["atg-a"])
    if kind == "antrea":
        rule = dataclasses.replace(rule, action=RuleAction.DROP, priority=0)
        pol = dataclasses.replace(policy("p", [rule], ["atg-a"]), tier_priority=250, priority=1.0)
    cache.apply(added(pol))
    dirty = cache.take_dirty()
    result = asyncio.run(rec.reconcile({r: cache.completed(r) for r in dirty}, with_base=True))
    assert not result.failed
    own: list[str] = []
    for rid in dirty:
        own += [render_flow(f) for f in rec.native.desired_of(rid) or []]
    return own, sorted(render_flow(f) for f in rt.flows.values())


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["antrea", "k8s"]),
    st.lists(services, min_size=1, max_size=6),
    st.lists(blocks, min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
def test_rendered_flows_do_not_depend_on_listing_order(
    kind: str, svcs: list[Service], peers: list[IPBlock], rnd: random.Random
) -> None:
    """Mixed services (ports, ranges from the same port, whole protocols, ICMP with and without
    a code) and peers (incl. /0) never crash the batch, and the rule's flows, in order, are the
    same however its services and peers are listed."""
    first = _realize(kind, svcs, peers)
    rnd.shuffle(svcs)
    rnd.shuffle(peers)
    assert _realize(kind, svcs, peers) == first
    assert bool(first[0]) is (kind == "antrea")
