"""ControlPlaneClient against a real ControllerServer (TLS, fake auth/store): discovery through
Endpoints + ConfigMap, initial state, patches, heartbeats, reconnect with stream-restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from antrea.agent.controlplane_client import STREAM_RESTART, ControlPlaneClient, StreamMirror
from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NetworkPolicy,
    NetworkPolicyNodeStatus,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    Service,
)
from antrea.controller import certs
from antrea.controller.distribution import Dispatcher
from antrea.controller.server import ControllerServer
from antrea.controller.status import StatusAggregator
from antrea.k8s.resources import JSON
from antrea.k8s.reviews import Identity


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    old: Any
    new: Any
    old_span: frozenset[str]
    new_span: frozenset[str]
    patch: Any = None


class Store:
    def __init__(self) -> None:
        self.objs: dict[tuple[Kind, str], tuple[Any, frozenset[str]]] = {}

    def get(self, kind: Kind, name: str) -> tuple[Any, frozenset[str]] | None:
        return self.objs.get((kind, name))

    def list(self, kind: Kind) -> list[tuple[Any, frozenset[str]]]:
        return [v for (k, _), v in self.objs.items() if k is kind]


class Auth:
    async def authenticate(self, token: str) -> Identity | None:
        return Identity("system:node:n1") if token == "tok-n1" else None


class FakeKube:
    def __init__(self) -> None:
        self.objs: dict[str, JSON] = {}

    async def get(self, path: str) -> JSON | None:
        return self.objs.get(path)

    async def create(self, collection: str, body: JSON) -> JSON:
        raise NotImplementedError

    async def replace(self, path: str, body: JSON) -> JSON:
        raise NotImplementedError


EP = "/api/v1/namespaces/kube-system/endpoints/antrea"
CM = "/api/v1/namespaces/kube-system/configmaps/antrea-ca"


class Controller:
    def __init__(self, tmp: Any) -> None:
        self.store = Store()
        self.dispatcher = Dispatcher(self.store)
        self.status = StatusAggregator()
        self.server = ControllerServer(
            dispatcher=self.dispatcher,
            store=self.store,
            authenticator=Auth(),
            status=self.status,
            serving=lambda: None,
            info=dict,
            heartbeat=0.05,
        )
        self.ca, ca_key = certs.generate_ca()
        cert, key = certs.issue_serving_cert(self.ca, ca_key, ["127.0.0.1"])
        self.ssl = certs.server_ssl_context(cert, key, tmp)
        self.port = 0

    async def start(self) -> None:
        self.port = await self.server.start("127.0.0.1", self.port, self.ssl)

    def put(self, obj: Any, span: set[str], patch: Any = None) -> None:
        kind = Kind.ADDRESS_GROUP
        old = self.store.objs.get((kind, obj.name))
        self.store.objs[(kind, obj.name)] = (obj, frozenset(span))
        self.dispatcher.on_change(
            Change(
                kind,
                obj.name,
                old[0] if old else None,
                obj,
                old[1] if old else frozenset(),
                frozenset(span),
                patch,
            )
        )


@pytest.fixture
async def ctl(tmp_path: Any) -> AsyncIterator[Controller]:
    c = Controller(tmp_path)
    await c.start()
    try:
        yield c
    finally:
        await c.server.stop()


def kube_for(c: Controller) -> FakeKube:
    k = FakeKube()
    k.objs[EP] = {
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": c.port}]}
        ]
    }
    k.objs[CM] = {"data": {"ca.crt": c.ca.decode()}}
    return k


def member(name: str, ip: str) -> GroupMember:
    return GroupMember(PodReference("ns", name), (ip,), "n2")


async def take(it: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    return [await asyncio.wait_for(anext(it), 10) for _ in range(n)]


async def test_initial_state_patches_and_reconnect(ctl: Controller) -> None:
    a, b = member("a", "10.0.2.1"), member("b", "10.0.2.2")
    ctl.put(AddressGroup("ag1", frozenset({a})), {"n1"})
    client = ControlPlaneClient(
        "n1", kube=kube_for(ctl), token="tok-n1", backoff_initial=0.05, idle_timeout=2
    )
    it = client.events().__aiter__()
    try:
        added, bookmark = await take(it, 2)
        assert added.type is EventType.ADDED and added.object == AddressGroup("ag1", frozenset({a}))
        assert bookmark.type is EventType.BOOKMARK
        await asyncio.sleep(0.2)  # heartbeats flow meanwhile and are swallowed
        patch = AddressGroupPatch("ag1", frozenset({b}), frozenset())
        ctl.put(AddressGroup("ag1", frozenset({a, b})), {"n1"}, patch)
        (mod,) = await take(it, 1)
        assert mod.type is EventType.MODIFIED and mod.patch == patch and mod.object is None
        # the controller drops every stream (e.g. leadership lost): a full state follows
        ctl.dispatcher.close_all("test")
        restart, added, bookmark = await take(it, 3)
        assert restart.type is EventType.ERROR and restart.message == STREAM_RESTART
        assert added.object == AddressGroup("ag1", frozenset({a, b}))
        assert bookmark.type is EventType.BOOKMARK
        assert client.connections == 2
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()


async def test_reconnects_to_a_restarted_controller_and_resends_status(
    ctl: Controller, tmp_path: Any
) -> None:
    client = ControlPlaneClient(
        "n1",
        kube=kube_for(ctl),
        token="tok-n1",
        backoff_initial=0.05,
        backoff_max=0.2,
        idle_timeout=1,
    )
    it = client.events().__aiter__()
    try:
        (bookmark,) = await take(it, 1)
        assert bookmark.type is EventType.BOOKMARK
        await client.report_status(NetworkPolicyNodeStatus("p1", "n1", 2))
        assert client.status_reports_failed == 0
        assert ctl.status.status("p1", 2, frozenset({"n1"})).current == 1
        # a whole new controller on the same port (fresh status memory)
        await ctl.server.stop()
        fresh = Controller(tmp_path)
        fresh.port = ctl.port
        fresh.ca, fresh.ssl = ctl.ca, ctl.ssl
        await fresh.start()
        try:
            restart, bookmark = await take(it, 2)
            assert restart.message == STREAM_RESTART and bookmark.type is EventType.BOOKMARK
            for _ in range(100):
                if fresh.status.status("p1", 2, frozenset({"n1"})).current == 1:
                    break
                await asyncio.sleep(0.02)
            assert fresh.status.status("p1", 2, frozenset({"n1"})).current == 1
        finally:
            await fresh.server.stop()
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()


async def test_refused_token_keeps_retrying_without_events(ctl: Controller) -> None:
    client = ControlPlaneClient(
        "n1", kube=kube_for(ctl), token="wrong", backoff_initial=0.01, backoff_max=0.02
    )
    it = client.events().__aiter__()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(it), 0.3)
        assert "401" in client.last_error and client.connections == 0
    finally:
        await client.close()


async def test_mirror_applies_restart_and_patches(ctl: Controller, tmp_path: Any) -> None:
    a, b = member("a", "10.0.2.1"), member("b", "10.0.2.2")
    ctl.put(AddressGroup("ag1", frozenset({a})), {"n1"})
    ctl.put(AddressGroup("ag2", frozenset({b})), {"n1"})
    client = ControlPlaneClient("n1", kube=kube_for(ctl), token="tok-n1", backoff_initial=0.05)
    dump = tmp_path / "view.json"
    mirror = StreamMirror(client, str(dump))
    task = asyncio.get_running_loop().create_task(mirror.run())
    try:

        async def until(cond: Any) -> None:
            for _ in range(200):
                if cond():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("condition not reached")

        await until(lambda: mirror.bookmarks == 1)
        ctl.put(
            AddressGroup("ag1", frozenset({a, b})),
            {"n1"},
            AddressGroupPatch("ag1", frozenset({b}), frozenset()),
        )
        await until(lambda: len(mirror.objects["AddressGroup"]["ag1"].members) == 2)
        ctl.put(AddressGroup("ag2", frozenset({b})), set())  # leaves n1's span
        ctl.dispatcher.close_all("test")
        await until(lambda: mirror.bookmarks == 2)
        assert set(mirror.objects["AddressGroup"]) == {"ag1"}
        assert dump.exists()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_on_disconnect_fires_during_an_outage_not_at_the_next_connect(
    ctl: Controller, tmp_path: Any
) -> None:
    """The consumer learns the stream is down while the controller is away (agentinfo's
    controllerConnected), and the reconnect then brings a full state."""
    client = ControlPlaneClient(
        "n1", kube=kube_for(ctl), token="tok-n1", backoff_initial=0.05, backoff_max=0.2
    )
    lost = asyncio.Event()
    client.on_disconnect = lost.set
    it = client.events().__aiter__()
    try:
        (bookmark,) = await take(it, 1)
        assert bookmark.type is EventType.BOOKMARK and not lost.is_set()
        await ctl.server.stop()
        pending = asyncio.ensure_future(anext(it))
        await asyncio.wait_for(lost.wait(), 10)  # the controller is still down
        assert not client.connected and not pending.done()
        fresh = Controller(tmp_path)
        fresh.port = ctl.port
        fresh.ca, fresh.ssl = ctl.ca, ctl.ssl
        lost.clear()
        await fresh.start()
        try:
            restart = await asyncio.wait_for(pending, 10)
            (bookmark,) = await take(it, 1)
            assert restart.message == STREAM_RESTART and bookmark.type is EventType.BOOKMARK
            assert client.connected
        finally:
            await fresh.server.stop()
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()


async def test_report_stats_reaches_the_controller_for_this_node_only(ctl: Controller) -> None:
    from antrea.apis.stats.types import NodeStatsSummary, RuleTraffic, TrafficStats

    client = ControlPlaneClient("n1", kube=kube_for(ctl), token="tok-n1", backoff_initial=0.05)
    summary = NodeStatsSummary("n1", (RuleTraffic("p1", "r", "a.1", TrafficStats(3, 300, 1)),))
    assert not await client.report_stats(summary)  # no controller found yet
    it = client.events().__aiter__()
    try:
        (bookmark,) = await take(it, 1)
        assert bookmark.type is EventType.BOOKMARK
        assert await client.report_stats(summary)
        assert ctl.server.stats.rules("p1") == {} and ctl.server.stats.dropped == 1  # unknown
        ctl.store.objs[(Kind.NETWORK_POLICY, "p1")] = (object(), frozenset({"n1"}))
        assert await client.report_stats(summary)
        assert ctl.server.stats.rules("p1") == {"r": TrafficStats(3, 300, 1)}
        assert not await client.report_stats(NodeStatsSummary("n2", summary.rules))  # 403
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()


async def test_statuses_reported_together_go_in_one_post(ctl: Controller) -> None:
    client = ControlPlaneClient("n1", kube=kube_for(ctl), token="tok-n1", idle_timeout=1)
    it = client.events().__aiter__()
    try:
        (bookmark,) = await take(it, 1)
        assert bookmark.type is EventType.BOOKMARK
        await asyncio.gather(
            *(client.report_status(NetworkPolicyNodeStatus(f"p{i}", "n1", 1)) for i in range(50))
        )
        assert client.status_reports_failed == 0 and client.status_posts == 1
        for i in range(50):
            assert ctl.status.status(f"p{i}", 1, frozenset({"n1"})).current == 1
        # a newer status of a policy queued behind an in-flight POST replaces the older one
        first = asyncio.ensure_future(client.report_status(NetworkPolicyNodeStatus("q", "n1", 1)))
        await asyncio.sleep(0)
        await asyncio.gather(
            client.report_status(NetworkPolicyNodeStatus("q", "n1", 2)),
            client.report_status(NetworkPolicyNodeStatus("q", "n1", 3)),
            first,
        )
        assert client.status_reports_failed == 0
        assert ctl.status.status("q", 3, frozenset({"n1"})).current == 1
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()


async def test_an_older_controller_gets_one_post_per_status(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A controller without the list endpoint (405 here) gets the statuses one by one."""
    import antrea.agent.controlplane_client as cpc
    from antrea.apis.controlplane.names import STATUS_PATH

    monkeypatch.setattr(cpc, "STATUSES_PATH", STATUS_PATH + "-not-served")
    client = ControlPlaneClient("n1", kube=kube_for(ctl), token="tok-n1", idle_timeout=1)
    it = client.events().__aiter__()
    try:
        await take(it, 1)
        await asyncio.gather(
            *(client.report_status(NetworkPolicyNodeStatus(f"p{i}", "n1", 1)) for i in range(3))
        )
        assert client.status_reports_failed == 0 and client.status_posts == 1 + 3
        for i in range(3):
            assert ctl.status.status(f"p{i}", 1, frozenset({"n1"})).current == 1
        await asyncio.gather(
            *(client.report_status(NetworkPolicyNodeStatus(f"p{i}", "n1", 2)) for i in range(3))
        )
        assert client.status_posts == 4 + 3  # the list endpoint is not tried again
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()


async def test_the_stream_is_wire_version_2_and_a_policy_arrives_whole(ctl: Controller) -> None:
    """The agent asks for version 2 (positional rules): the controller serves it, and a policy
    decodes to the object the controller holds."""
    rule = NetworkPolicyRule(
        Direction.IN,
        from_=NetworkPolicyPeer(("ag1",), (IPBlock("10.0.0.0/8", ("10.1.0.0/16",)),)),
        services=(Service(Protocol.TCP, 80, 90),),
        name="r0",
        priority=0,
    )
    ref = NetworkPolicyReference("K8sNetworkPolicy", "ns", "np", "uid-1")
    policy = NetworkPolicy("uid-1", ref, (rule,), ("atg1",), generation=3)
    client = ControlPlaneClient(
        "n1", kube=kube_for(ctl), token="tok-n1", backoff_initial=0.05, idle_timeout=2
    )
    it = client.events().__aiter__()
    try:
        (bookmark,) = await take(it, 1)
        assert bookmark.type is EventType.BOOKMARK
        assert [w.wire for w in ctl.dispatcher.watchers] == [2]
        ctl.store.objs[(Kind.NETWORK_POLICY, "uid-1")] = (policy, frozenset({"n1"}))
        ctl.dispatcher.on_change(
            Change(Kind.NETWORK_POLICY, "uid-1", None, policy, frozenset(), frozenset({"n1"}))
        )
        (added,) = await take(it, 1)
        assert added.type is EventType.ADDED and added.object == policy
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await client.close()
