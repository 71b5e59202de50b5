"""Rules to flows: the conjunction encoding, sharing, isolation and minimal edits."""

from __future__ import annotations

import re

import pytest

from antrea.agent.networkpolicy.cache import RuleCache
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.apis.controlplane.types import PodReference
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.render import render_flow
from antrea.testbed.controlplane import (
    ANY,
    AddressGroup,
    AppliedToGroup,
    IPBlock,
    added,
    egress,
    ingress,
    member,
    policy,
    tcp,
    udp,
)
from antrea.testbed.openflow import RecordingTransport

OFPORTS = {("x", "a"): 3, ("x", "b"): 4, ("x", "c"): 5}

A = member("x", "a", "10.244.1.10", ("serve-80-tcp", "TCP", 80))
B = member("x", "b", "10.244.1.20", ("serve-80-tcp", "TCP", 8080))
C = member("x", "c", "10.244.1.30")
YB = member("y", "b", "10.244.2.20", ("serve-80-tcp", "TCP", 80))


def ofport_of(pod: PodReference) -> int | None:
    return OFPORTS.get((pod.namespace, pod.name))


def lines(rt: RecordingTransport, table: int) -> list[str]:
    out = []
    for f in rt.table(table):
        # drop table= and cookie= to compare with dump-flows samples
        out.append(re.sub(r",?(table|cookie)=[^, ]*", "", render_flow(f)).lstrip(","))
    return out


class Env:
    def __init__(self) -> None:
        self.rt = RecordingTransport()
        self.client = FlowClient(self.rt)
        self.rec = PolicyReconciler(
            self.client, round_num=1, ofport_of=ofport_of, install_miss_flows=True
        )
        self.cache = RuleCache()

    def load(self, *objs: object) -> None:
        for o in objs:
            self.cache.apply(added(o))  # type: ignore[arg-type]

    async def sync(self) -> object:
        dirty = self.cache.take_dirty()
        return await self.rec.reconcile(
            {r: self.cache.completed(r) for r in dirty}, with_base=not self.rec.realized
        )


@pytest.fixture
def env() -> Env:
    return Env()


async def test_ingress_rule_reads_like_antrea(env: Env) -> None:
    env.load(
        AddressGroup("ag-yb", frozenset({YB})),
        AppliedToGroup("atg-a", frozenset({A})),
        policy("p1", [ingress(groups=["ag-yb"])], ["atg-a"]),
    )
    await env.sync()
    t90 = lines(env.rt, 90)
    assert "priority=200,ip,nw_src=10.244.2.20 actions=conjunction(1,1/2)" in t90
    assert "priority=200,ip,reg1=0x3 actions=conjunction(1,2/2)" in t90
    assert "priority=190,ip,conj_id=1 actions=load:0x1->NXM_NX_REG6[],goto_table:105" in t90
    assert "priority=210,ip,ct_state=-new+est actions=goto_table:105" in t90
    assert lines(env.rt, 100) == [
        "priority=200,ip,reg1=0x3 actions=drop",
        "priority=0 actions=goto_table:105",
    ]
    assert "priority=0 actions=goto_table:100" in t90


async def test_shared_match_flow_carries_several_conjunctions(env: Env) -> None:
    env.load(
        AddressGroup("ag-yb", frozenset({YB})),
        AppliedToGroup("atg-a", frozenset({A})),
        policy("p1", [ingress(groups=["ag-yb"], services=[tcp(80)])], ["atg-a"]),
        policy("p2", [ingress(blocks=[ANY], services=[tcp(80)])], ["atg-a"]),
    )
    await env.sync()
    t90 = lines(env.rt, 90)
    reg1 = [x for x in t90 if "reg1=0x3" in x]
    assert len(reg1) == 1
    assert reg1[0].count("conjunction(") == 2
    tp = [x for x in t90 if "tp_dst=80" in x]
    assert len(tp) == 1 and tp[0].count("conjunction(") == 2
    assert any(x.startswith("priority=200,ip actions=conjunction(") for x in t90)  # match-all
    assert len(lines(env.rt, 100)) == 2  # one drop for x/a, refcounted by both rules

    # deleting p2 rewrites the shared flows, removes only p2's own flows, keeps the drop
    before = dict(env.rt.flows)
    env.cache.apply(added(policy("p2", [], ["atg-a"], generation=2)))
    await env.sync()
    adds, mods, dels = env.rt.bundles[-1]
    assert {f.table for f in mods} == {90}
    assert len(mods) == 2  # reg1=0x3 and tcp,tp_dst=80 now carry one conjunction each
    assert not adds
    assert len(dels) == 3  # match-all clause, action flow, metric flow of p2
    assert len(lines(env.rt, 100)) == 2
    assert len(env.rt.flows) == len(before) - 3


async def test_named_ports_resolve_per_target(env: Env) -> None:
    env.load(
        AddressGroup("ag-yb", frozenset({YB})),
        AppliedToGroup("atg-abc", frozenset({A, B, C})),
        policy("p1", [ingress(groups=["ag-yb"], services=[tcp("serve-80-tcp")])], ["atg-abc"]),
    )
    await env.sync()
    t90 = lines(env.rt, 90)
    assert len([x for x in t90 if "conj_id=" in x]) == 2  # 80 for a, 8080 for b
    assert any("tcp,tp_dst=80 " in x for x in t90)
    assert any("tcp,tp_dst=8080 " in x for x in t90)
    assert not any("reg1=0x5" in x for x in t90)  # c has no such port: no conjunction
    assert any("reg1=0x5" in x for x in lines(env.rt, 100))  # ... but it is isolated


async def test_egress_named_ports_resolve_per_peer(env: Env) -> None:
    env.load(
        AddressGroup("ag-ab", frozenset({A, B})),
        AppliedToGroup("atg-c", frozenset({C})),
        policy("p1", [egress(groups=["ag-ab"], services=[tcp("serve-80-tcp")])], ["atg-c"]),
    )
    await env.sync()
    t50 = lines(env.rt, 50)
    src = [x for x in t50 if "nw_src=10.244.1.30" in x]
    assert src == [
        "priority=200,ip,nw_src=10.244.1.30 actions=conjunction(1,1/3),conjunction(2,1/3)"
    ]
    dst_a = [x for x in t50 if "nw_dst=10.244.1.10" in x]
    dst_b = [x for x in t50 if "nw_dst=10.244.1.20" in x]
    assert len(dst_a) == 1 and len(dst_b) == 1 and dst_a[0] != dst_b[0]
    assert lines(env.rt, 60)[0] == "priority=200,ip,nw_src=10.244.1.30 actions=drop"


async def test_deny_all_installs_only_isolation(env: Env) -> None:
    env.load(AppliedToGroup("atg-a", frozenset({A})), policy("p1", [ingress()], ["atg-a"]))
    await env.sync()
    assert not any("conj" in x for x in lines(env.rt, 90))
    assert "priority=200,ip,reg1=0x3 actions=drop" in lines(env.rt, 100)


async def test_except_and_end_port(env: Env) -> None:
    env.load(
        AppliedToGroup("atg-a", frozenset({A})),
        policy(
            "p1",
            [
                ingress(
                    blocks=[IPBlock("10.244.0.0/16", ("10.244.2.0/24",))],
                    services=[tcp(80, 95), udp()],
                )
            ],
            ["atg-a"],
        ),
    )
    await env.sync()
    t90 = lines(env.rt, 90)
    assert any("tcp,tp_dst=0x50/0xfff0 " in x for x in t90)
    assert any(x.startswith("priority=200,udp actions=conjunction(1,3/3)") for x in t90)
    srcs = [x for x in t90 if "nw_src=" in x]
    assert len(srcs) == 8  # /16 minus a /24: one prefix per bit in between
    assert not any("10.244.2." in x for x in srcs)


async def test_group_change_edits_only_its_flows(env: Env) -> None:
    env.load(
        AddressGroup("ag", frozenset({YB})),
        AppliedToGroup("atg-a", frozenset({A})),
        policy("p1", [ingress(groups=["ag"])], ["atg-a"]),
    )
    await env.sync()
    env.cache.apply(added(AddressGroup("ag", frozenset({YB, C}))))
    await env.sync()
    adds, mods, dels = env.rt.bundles[-1]
    assert [render_flow(f).split(" actions")[0].split(",")[-1] for f in adds] == [
        "nw_src=10.244.1.30"
    ]
    assert not mods and not dels


async def test_everything_gone_leaves_only_base_flows(env: Env) -> None:
    p = policy("p1", [ingress(groups=["ag"]), egress(blocks=[ANY])], ["atg-a"])
    env.load(AddressGroup("ag", frozenset({YB})), AppliedToGroup("atg-a", frozenset({A})), p)
    await env.sync()
    base = len(env.rec.base_flows())
    assert len(env.rt.flows) > base
    env.cache.delete_policy("p1")
    await env.sync()
    assert len(env.rt.flows) == base
    assert not env.rec._matches and not env.rec._isolation


async def test_rejected_owner_fails_its_rule_only(env: Env) -> None:
    class PickyTransport(RecordingTransport):
        async def bundle(self, *, add=(), modify=(), delete=(), **groups):
            if any("10.9.9.9" in render_flow(f) for f in add):
                from antrea.ovs.errors import BundleRejected

                raise BundleRejected(["fake"], 1, "bad flow")
            await super().bundle(add=add, modify=modify, delete=delete, **groups)

    env.rt = PickyTransport()
    env.rec.client = FlowClient(env.rt)
    env.load(
        AppliedToGroup("atg-a", frozenset({A})),
        policy("good", [ingress(blocks=[IPBlock("10.1.0.0/16")])], ["atg-a"]),
        policy("bad", [ingress(blocks=[IPBlock("10.9.9.9/32")])], ["atg-a"]),
    )
    result = await env.sync()
    bad_rule = next(r for r in env.cache.rules.values() if r.policy == "bad")
    assert set(result.failed) == {bad_rule.id}  # type: ignore[attr-defined]
    assert "10.9.9.9" in result.failed[bad_rule.id]  # type: ignore[attr-defined]
    assert any("10.1.0.0/16" in x for x in lines(env.rt, 90))
    assert "priority=200,ip,reg1=0x3 actions=drop" in lines(env.rt, 100)
