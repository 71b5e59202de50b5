"""No size ceiling: clause flows split over priority bands, invisible to everything else."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy.cache import RuleCache
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.agent.openflow import pipeline as t
from antrea.agent.owners import PolicyOwner, is_policy_owner
from antrea.apis.controlplane.types import PodReference
from antrea.ovs.openflow import Conjunction
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.render import render_match
from antrea.ovs.openflow.sim import FlowTables, Packet
from antrea.testbed.controlplane import (
    AddressGroup,
    AppliedToGroup,
    IPBlock,
    added,
    deleted,
    ingress,
    member,
    modified,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport

PODS = [member("x", f"p{i}", f"10.244.1.{10 + i}") for i in range(3)]
OFPORTS = {PodReference("x", f"p{i}"): 3 + i for i in range(3)}


class Env:
    def __init__(self, cap: int) -> None:
        self.rt = RecordingTransport()
        self.rec = PolicyReconciler(
            FlowClient(self.rt),
            round_num=1,
            ofport_of=OFPORTS.get,
            max_conjunctions_per_flow=cap,
        )
        self.cache = RuleCache()
        for i, p in enumerate(PODS):
            self.cache.apply(added(AppliedToGroup(f"atg-{i}", frozenset({p}))))

    async def sync(self) -> None:
        dirty = self.cache.take_dirty()
        result = await self.rec.reconcile({r: self.cache.completed(r) for r in dirty})
        assert not result.failed
        assert_sent_is_indexed(self.rec)

    def clause_flows(self) -> dict[tuple[int, str, int], tuple[int, int]]:
        """(table, match, conj id) -> (clause, n), whatever the band; checks band invariants."""
        out: dict[tuple[int, str, int], tuple[int, int]] = {}
        prio_of: dict[int, set[int]] = defaultdict(set)
        for f in self.rt.flows.values():
            conjs = [a for a in f.actions if isinstance(a, Conjunction)]
            if not conjs:
                continue
            assert t.PRIO_MATCH_LOWEST <= f.priority <= t.PRIO_MATCH
            assert len(conjs) <= self.rec.band_cap
            for c in conjs:
                key = (f.table, render_match(f.match), c.conj_id)
                assert key not in out, "a conjunction in two bands of one match"
                out[key] = (c.clause, c.n_clauses)
                prio_of[c.conj_id].add(f.priority)
        # OVS evaluates a conjunction at one priority: all its clause flows share it
        assert all(len(p) == 1 for p in prio_of.values()), prio_of
        return out

    def others(self) -> set[tuple[int, int, str, str]]:
        return {
            (f.table, f.priority, render_match(f.match), repr(f.actions))
            for f in self.rt.flows.values()
            if not any(isinstance(a, Conjunction) for a in f.actions)
        }


def assert_sent_is_indexed(rec: PolicyReconciler) -> None:
    """What the batches sent (flows built from the entries each batch recorded as it linked)
    is what the indexes say now, owner by owner (`_desired_of` rebuilds from the indexes)."""
    owners = {o for o in rec.client.owners() if is_policy_owner(o)}
    owners |= {(PolicyOwner.MATCH, t, a) for t, a in rec._matches}
    owners |= {(PolicyOwner.ISOLATION, t, a) for t, a in rec._isolation}
    for owner in owners:
        want = sorted(map(repr, rec._desired_of(owner) or ()))
        assert sorted(map(repr, rec.client.flows_of(owner))) == want, owner


PEER_IPS = [f"10.0.{i}.1" for i in range(4)]


def _policy(n: int, pod: int, cidrs: list[str], port: int | None, gen: int) -> object:
    services = [tcp(port)] if port is not None else None
    rules = [
        ingress(groups=["ag"], services=services)
        if c == "ag"
        else ingress(blocks=[IPBlock(c)], services=services)
        for c in cidrs
    ]
    return policy(f"np-{n}", rules, [f"atg-{pod}"], generation=gen)


def _group(ips: list[str]) -> AddressGroup:
    return AddressGroup("ag", frozenset(member("y", f"q{ip}", ip) for ip in ips))


ops = st.lists(
    st.tuples(
        st.integers(0, 7),  # policy (8: the address group "ag" instead)
        st.integers(0, 2),  # target pod
        # peers: /32 blocks of the same addresses as the group's members, so atoms collide
        st.lists(st.sampled_from([*(f"{ip}/32" for ip in PEER_IPS), "ag"]), min_size=1, max_size=3),
        st.sampled_from([None, 8080, 80]),
        st.booleans(),  # delete instead of apply
    ),
    max_size=25,
)
groups = st.lists(st.lists(st.sampled_from(PEER_IPS), unique=True), max_size=25)


@settings(max_examples=60, deadline=None)
@given(ops, groups)
def test_bands_match_the_unbounded_encoding(
    steps: list[tuple[int, int, list[str], int | None, bool]], members: list[list[str]]
) -> None:
    """Any add/change/delete sequence: the banded flows carry exactly the conjunctions of the
    unbounded encoding (same IDs, clauses, action flows), each flow within the cap, every
    conjunction at one priority, and packets (simulated lookups) get the same verdicts."""

    async def run() -> None:
        small, big = Env(cap=2), Env(cap=10**6)
        for env in (small, big):
            env.cache.apply(added(_group([])))
        live: dict[int, object] = {}
        for i, (n, pod, cidrs, port, delete) in enumerate(steps):
            gen = i + 1
            old = live.pop(n, None)
            if delete:
                evs = [deleted(old)] if old is not None else []  # type: ignore[arg-type]
            else:
                live[n] = new = _policy(n, pod, cidrs, port, gen)
                evs = [modified(new) if old is not None else added(new)]  # type: ignore[arg-type]
            if i < len(members):  # the group's membership changes: clauses of live rules too
                evs.insert(0, modified(_group(members[i])))
            for env in (small, big):
                for ev in evs:
                    env.cache.apply(ev)
                await env.sync()
                env.clause_flows()
            assert small.clause_flows() == big.clause_flows()
            assert small.others() == big.others()
        # and packets see the same policy: every peer to every pod, on each port
        for ip in [*PEER_IPS, "10.9.9.9"]:
            for pod, ofport in enumerate(OFPORTS.values()):
                for port in (80, 8080, 9):
                    pkt = Packet("tcp", ip, f"10.244.1.{10 + pod}", port, regs={1: ofport})
                    got = [
                        FlowTables(env.rt.flows.values(), (90, 100)).run(90, pkt)
                        for env in (small, big)
                    ]
                    assert (got[0].dropped, got[0].table) == (got[1].dropped, got[1].table)
        for old in live.values():
            for env in (small, big):
                env.cache.apply(deleted(old))  # type: ignore[arg-type]
        for env in (small, big):
            await env.sync()
            assert not env.rec._matches and not env.rec._band_load and not env.rec._conj_band

    asyncio.run(run())


async def test_one_shared_port_clause_over_many_bands() -> None:
    """5 rules on one pod sharing tcp/8080 with 2 actions per flow: 3 bands of the same match."""
    env = Env(cap=2)
    env.cache.apply(added(_policy(0, 0, [f"10.1.{i}.0/24" for i in range(5)], 8080, 1)))  # type: ignore[arg-type]
    await env.sync()
    port_flows = [f for f in env.rt.flows.values() if "tp_dst=8080" in render_match(f.match)]
    assert sorted(f.priority for f in port_flows) == [198, 199, 200]
    assert sorted(len(f.actions) for f in port_flows) == [1, 2, 2]
    assert len({render_match(f.match) for f in port_flows}) == 1


async def test_conjunction_moves_band_when_its_new_peer_has_no_room() -> None:
    """A group gains a member whose clause flow is full in the rule's band: the conjunction
    moves to the next band as a whole, in the same bundle."""
    env = Env(cap=2)
    env.cache.apply(added(_group(["10.0.0.3"])))
    for ev in (
        added(_policy(0, 0, ["ag"], None, 1)),  # type: ignore[arg-type]
        added(_policy(1, 1, ["10.0.0.1/32"], None, 1)),  # type: ignore[arg-type]
        added(_policy(2, 2, ["10.0.0.1/32"], None, 1)),  # type: ignore[arg-type]
    ):
        env.cache.apply(ev)
    await env.sync()
    assert {f.priority for f in env.rt.flows.values() if f.priority <= 200 and f.table == 90} == {
        t.PRIO_MATCH,
        t.PRIO_ACTION,
    }
    env.cache.apply(modified(_group(["10.0.0.3", "10.0.0.1"])))
    bundles = len(env.rt.bundles)
    await env.sync()
    assert len(env.rt.bundles) == bundles + 1
    flows = env.clause_flows()  # checks the cap and one priority per conjunction
    moved = {
        f.priority
        for f in env.rt.flows.values()
        if f.table == 90 and "reg1=0x3" in render_match(f.match)
    }
    assert moved == {t.PRIO_MATCH - 1}
    assert len({cid for (_, m, cid) in flows if m == "ip,nw_src=10.0.0.1"}) == 3
