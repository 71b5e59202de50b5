"""AntreaProxy's realization logic against a recording transport (no switch)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.proxy.flows import NODEPORT_SNAT_IP, noencap_flows
from antrea.agent.proxy.nodeport import nodeport_rules
from antrea.agent.proxy.proxier import Proxier
from antrea.agent.proxy.types import Endpoint, endpoints_of, service_ports
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.ovs.openflow.cookie import Category, cookie_category, make_cookie
from antrea.ovs.openflow.flow import Flow, LoadReg, OutputGroup
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.render import render_add

JSON = dict[str, Any]


class Recorder:
    def __init__(self) -> None:
        self.bundles: list[dict[str, list[Any]]] = []

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        self.bundles.append(
            {
                "add": list(add),
                "modify": list(modify),
                "delete": list(delete),
                "set_groups": list(set_groups),
                "delete_groups": list(delete_groups),
            }
        )


def proxier() -> tuple[Proxier, Recorder]:
    rec = Recorder()
    writer = CoalescingWriter(FlowClient(rec))
    p = Proxier(
        writer=writer,
        transport=rec,
        cookie=partial(make_cookie, 1),
        node_name="n1",
    )
    return p, rec


def svc(name: str = "web", **spec: Any) -> JSON:
    return {
        "metadata": {"namespace": "x", "name": name},
        "spec": {
            "clusterIP": "10.96.0.10",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            **spec,
        },
    }


def eps_slice(*ips: str, name: str = "web-abc", node: str = "n2", port: int = 8080) -> JSON:
    return {
        "metadata": {
            "namespace": "x",
            "name": name,
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True}, "nodeName": node} for ip in ips
        ],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def test_parse_skips_headless_and_reads_affinity() -> None:
    assert service_ports(svc(clusterIP="None")) == []
    (sp,) = service_ports(
        svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}})
    )
    assert sp.affinity_timeout == 5 and sp.proto == "tcp"
    notready = eps_slice("10.244.1.2")
    notready["endpoints"][0]["conditions"]["ready"] = False
    assert endpoints_of([notready, eps_slice("10.244.1.3", name="b")]) == {
        ("http", "TCP"): frozenset({Endpoint(ipaddress.IPv4Address("10.244.1.3"), 8080, "n2")})
    }


async def test_endpoint_changes_are_group_mods_only() -> None:
    p, rec = proxier()
    p.on_service("ADDED", svc())
    await p.sync_dirty()
    assert rec.bundles == []  # no endpoints: no flows (the host rejects), no group
    p.on_slice("ADDED", eps_slice("10.244.1.2", "10.244.2.3"))
    await p.sync_dirty()
    flows = p.writer.client.flows_of(("service", "x", "web", "http", "TCP"))
    assert [a for f in flows for a in f.actions if isinstance(a, OutputGroup)]
    (group,) = [g for b in rec.bundles for g in b["set_groups"]]
    assert len(group.buckets) == 2
    # scale 2 -> 3 -> 1: one bundle each, only a group set (plus the new endpoint's DNAT flow)
    for ips in (("10.244.1.2", "10.244.2.3", "10.244.3.4"), ("10.244.3.4",)):
        rec.bundles.clear()
        p.on_slice("MODIFIED", eps_slice(*ips))
        await p.sync_dirty()
        set_bundles = [b for b in rec.bundles if b["set_groups"]]
        assert len(set_bundles) == 1 and len(set_bundles[0]["set_groups"][0].buckets) == len(ips)
        service_flow_changes = [
            f for b in rec.bundles for f in b["add"] + b["modify"] + b["delete"] if f.table == 41
        ]
        assert service_flow_changes == []
        assert not any(b["delete_groups"] for b in rec.bundles)
    dnat = [f for f in p.writer.client.installed() if f.table == 42]
    assert len(dnat) == 1  # flows of endpoints nobody uses are gone
    # last endpoint gone: the Service's flows go, then its group
    rec.bundles.clear()
    p.on_slice("DELETED", eps_slice())
    await p.sync_dirty()
    assert [
        f for f in p.writer.client.installed() if f.table in (41, 42) and f.priority == 200
    ] == []
    assert rec.bundles[-1]["delete_groups"] or any(b["delete_groups"] for b in rec.bundles)


async def test_internal_traffic_policy_local_keeps_local_endpoints() -> None:
    p, rec = proxier()
    p.on_service("ADDED", svc(internalTrafficPolicy="Local"))
    s = eps_slice("10.244.1.2")
    s["endpoints"].append(
        {"addresses": ["10.244.1.9"], "conditions": {"ready": True}, "nodeName": "n1"}
    )
    p.on_slice("ADDED", s)
    await p.sync_dirty()
    (group,) = [g for b in rec.bundles for g in b["set_groups"]]
    (bucket,) = group.buckets
    assert LoadReg(3, int(ipaddress.IPv4Address("10.244.1.9"))) in bucket.actions


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.frozensets(st.integers(min_value=2, max_value=12), max_size=5), min_size=1, max_size=8
    )
)
def test_any_sequence_of_endpoint_sets_ends_consistent(steps: list[frozenset[int]]) -> None:
    """Whatever the order of changes, the installed state is that of the last set only."""

    async def run() -> Proxier:
        p, _ = proxier()
        p.on_service("ADDED", svc())
        for ips in steps:
            p.on_slice("MODIFIED", eps_slice(*(f"10.244.1.{i}" for i in sorted(ips))))
            await p.sync_dirty()
        return p

    p = asyncio.run(run())
    last = steps[-1]
    dnat = sorted(str(f.match.regs[0].value) for f in p.writer.client.installed() if f.table == 42)
    want = sorted(str(int(ipaddress.IPv4Address(f"10.244.1.{i}"))) for i in last)
    assert dnat == want
    svc_flows = [f for f in p.writer.client.installed() if f.table == 41 and f.priority == 200]
    assert len(svc_flows) == (1 if last else 0)
    groups = p.groups()
    assert len(groups) == (1 if last else 0)
    if last:
        assert len(groups[0].buckets) == len(last)
    assert p.ep_refs == {(f"10.244.1.{i}", 8080, "tcp"): 1 for i in last}
    assert all(cookie_category(f.cookie) is Category.SERVICE for f in p.writer.client.installed())
    assert p._n_endpoints == len(last) and p._n_services == (1 if last else 0)

    async def delete() -> None:
        p.on_service("DELETED", svc())
        await p.sync_dirty()

    asyncio.run(delete())  # the Service goes: nothing of it is left
    assert p.installed == {} and p.ep_refs == {} and p.writer.client.installed() == []
    assert p.groups() == [] and p._n_services == 0 and p._n_endpoints == 0


def test_stale_conntrack_entries_are_picked_by_service_and_endpoint() -> None:
    from antrea.agent.proxy.conntrack import stale_tuples
    from antrea.ovs.openflow.render import render_ct_tuple
    from antrea.ovs.ovsctl import parse_conntrack_line

    dump = (
        "tcp,orig=(src=10.244.1.2,dst=10.96.0.11,sport=33442,dport=80),reply=(src=10.244.2.2,"
        "dst=10.244.1.2,sport=8080,dport=33442),zone=65520,mark=1,protoinfo=(state=TIME_WAIT)\n"
        "tcp,orig=(src=10.244.1.2,dst=10.244.2.2,sport=40000,dport=8080),reply=(src=10.244.2.2,"
        "dst=10.244.1.2,sport=8080,dport=40000),zone=65520,protoinfo=(state=ESTABLISHED)\n"
        "icmp,orig=(src=10.244.1.2,dst=10.96.0.11,id=1,type=8,code=0),reply=(src=10.96.0.11,"
        "dst=10.244.1.2,id=1,type=0,code=0),zone=65520\n"
    )
    entries = [e for e in map(parse_conntrack_line, dump.splitlines()) if e is not None]
    assert len(entries) == 2  # ICMP has no ports: never a Service endpoint's connection here
    stale = {("tcp", "10.96.0.11", 80, "10.244.2.2", 8080)}
    assert [render_ct_tuple(t) for t in stale_tuples(entries, stale)] == [
        "ct_nw_src=10.244.1.2,ct_nw_dst=10.96.0.11,ct_nw_proto=6,ct_tp_src=33442,ct_tp_dst=80"
    ]  # the direct connection to the pod is kept
    assert stale_tuples(entries, {("udp", "10.96.0.11", 80, "10.244.2.2", 8080)}) == []


async def test_flush_stale_dumps_the_zone_and_flushes_each_stale_tuple_once() -> None:
    from antrea.agent.proxy.conntrack import flush_stale
    from antrea.ovs.openflow.flow import ConntrackEntry, ConntrackTuple, Proto

    ip = ipaddress.IPv4Address
    orig = ConntrackTuple(Proto.UDP, ip("10.244.1.2"), ip("10.96.0.11"), 5353, 53)
    reply = ConntrackTuple(Proto.UDP, ip("10.244.2.2"), ip("10.244.1.2"), 53, 5353)
    calls: list[tuple[str, int, object]] = []

    class Switch:
        async def dump_conntrack(self, zone: int) -> list[ConntrackEntry]:
            calls.append(("dump", zone, None))
            return [ConntrackEntry(orig, reply), ConntrackEntry(orig, reply)]

        async def flush_conntrack(self, zone: int, t: ConntrackTuple) -> None:
            calls.append(("flush", zone, t))

    assert await flush_stale(Switch(), 65520, []) == 0 and calls == []
    stale = [("udp", "10.96.0.11", 53, "10.244.2.2", 53)]
    assert await flush_stale(Switch(), 65520, stale) == 1
    assert calls == [("dump", 65520, None), ("flush", 65520, orig)]


async def test_removed_endpoints_connections_are_flushed() -> None:
    p, _ = proxier()
    flushed: list[set[Any]] = []

    async def flush(stale: set[Any]) -> None:
        flushed.append(stale)

    p.flush_conntrack = flush
    p.on_service("ADDED", svc())
    p.on_slice("ADDED", eps_slice("10.244.1.2", "10.244.2.3"))
    await p.sync_dirty()
    assert flushed == []
    p.on_slice("MODIFIED", eps_slice("10.244.1.2"))
    await p.sync_dirty()
    assert flushed == [{("tcp", "10.96.0.10", 80, "10.244.2.3", 8080)}]


def test_nodeport_noencap_snats_to_a_routed_virtual_address() -> None:
    """encap masquerades NodePort (Cluster) traffic to gw0's address; noEncap SNATs it to the
    virtual 169.254.0.251 (routed into gw0, so a remote endpoint's reply crosses br-int) and
    masquerades that address to the node's on the way out to the underlay."""
    entries = [("tcp", 30080, False), ("tcp", 30081, True)]
    encap = nodeport_rules(entries, "gw0", encap=True)
    assert "-d 169.254.0.250 -j MASQUERADE" in encap and NODEPORT_SNAT_IP not in encap
    noencap = nodeport_rules(entries, "gw0", encap=False)
    assert f"-j SNAT --to-source {NODEPORT_SNAT_IP}" in noencap
    assert f"-s {NODEPORT_SNAT_IP}/32 ! -o gw0 -j MASQUERADE" in noencap
    assert "-d 169.254.0.250 -j MASQUERADE" not in noencap
    assert ipaddress.IPv4Address(NODEPORT_SNAT_IP) in ipaddress.IPv4Network("169.254.0.248/30")
    (flow,) = noencap_flows("02:00:00:00:00:01", 1)
    text = render_add(flow)
    assert "table=70" in text and "dl_dst=aa:bb:cc:dd:ee:ff" in text
    assert "set_field:02:00:00:00:00:01->eth_dst" in text and "goto_table:80" in text


async def test_antctl_service_filter_picks_the_services_flows_out_of_a_dump() -> None:
    """``antctl get ovsflows -S x/web``: the flows of the Service's groups and its endpoints'
    DNAT flows, read back from their dump-flows text; another Service's flows are not."""
    from antrea.agent.proxy import matches
    from antrea.ovs.openflow.render import render_flow
    from antrea.ovs.ovsctl import parse_flow_line

    p, _ = proxier()
    p.on_service("ADDED", svc())
    p.on_slice("ADDED", eps_slice("10.244.2.3"))
    p.on_service("ADDED", svc("db", clusterIP="10.96.0.20"))
    db_slice = eps_slice("10.244.2.9", name="db-abc")
    db_slice["metadata"]["labels"] = {"kubernetes.io/service-name": "db"}
    p.on_slice("ADDED", db_slice)
    await p.sync_dirty()
    dumped = [parse_flow_line(render_flow(f)) for f in p.writer.client.installed()]
    flows = [f for f in dumped if f is not None]
    web = [f for f in flows if matches(p, "x", "web", f)]
    db = [f for f in flows if matches(p, "x", "db", f)]
    assert any("nat(dst=10.244.2.3:8080)" in f.actions for f in web)
    assert not any("10.244.2.9" in f.text for f in web) and web and db
    assert not {f.text for f in web} & {f.text for f in db}
