"""The controller HTTPS API: authentication, per-node authorization, list/get, status, metrics."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from antrea.apis.controlplane.codec import (
    EventType,
    FrameDecoder,
    WatchEvent,
    encode_status,
    encode_statuses,
)
from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    GroupMember,
    Kind,
    NetworkPolicy,
    NetworkPolicyNodeStatus,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
)
from antrea.controller import certs
from antrea.controller.distribution import Dispatcher
from antrea.controller.server import ControllerServer
from antrea.controller.status import StatusAggregator
from antrea.k8s.reviews import AccessReviewer, Identity
from antrea.util import logging as logutil

TOKENS = {
    "t-admin": Identity("admin", frozenset({"system:masters"})),
    "t-n1": Identity("system:node:n1", frozenset({"system:nodes"})),
    "t-n2": Identity("system:node:n2", frozenset({"system:nodes"})),
    "t-other": Identity("someone", frozenset()),
}


class FakeAuth:
    async def authenticate(self, token: str) -> Identity | None:
        return TOKENS.get(token)


class Store:
    def __init__(self) -> None:
        self.objs: dict[tuple[Kind, str], tuple[Any, frozenset[str]]] = {}

    def get(self, kind: Kind, name: str) -> tuple[Any, frozenset[str]] | None:
        return self.objs.get((kind, name))

    def list(self, kind: Kind) -> list[tuple[Any, frozenset[str]]]:
        return [v for (k, _), v in self.objs.items() if k is kind]


@dataclass
class Env:
    base: str
    ssl: ssl.SSLContext
    server: ControllerServer
    store: Store
    state: dict[str, Any]


NP = NetworkPolicy(
    name="uid-1",
    source_ref=NetworkPolicyReference("K8sNetworkPolicy", "default", "np1", "uid-1"),
    rules=(NetworkPolicyRule(Direction.IN),),
    applied_to_groups=("atg1",),
    generation=3,
)


@pytest.fixture
async def env(tmp_path: Any) -> AsyncIterator[Env]:
    store = Store()
    a = GroupMember(PodReference("default", "a"), ("10.0.1.2",), "n1")
    b = GroupMember(PodReference("default", "b"), ("10.0.2.2",), "n2")
    store.objs[(Kind.APPLIED_TO_GROUP, "atg1")] = (
        AppliedToGroup("atg1", frozenset({a, b})),
        frozenset({"n1", "n2"}),
    )
    store.objs[(Kind.NETWORK_POLICY, "uid-1")] = (NP, frozenset({"n1", "n2"}))
    state: dict[str, Any] = {"serving": None}
    server = ControllerServer(
        dispatcher=Dispatcher(store),
        store=store,
        authenticator=FakeAuth(),
        status=StatusAggregator(),
        serving=lambda: state["serving"],
        info=lambda: {"leader": "n1"},
        heartbeat=0.05,
    )
    ca, ca_key = certs.generate_ca()
    cert, key = certs.issue_serving_cert(ca, ca_key, ["127.0.0.1"])
    port = await server.start("127.0.0.1", 0, certs.server_ssl_context(cert, key, tmp_path))
    try:
        yield Env(f"https://127.0.0.1:{port}", certs.client_ssl_context(ca), server, store, state)
    finally:
        await server.stop()


async def call(env: Env, method: str, path: str, token: str | None, **kw: Any) -> tuple[int, Any]:
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, env.base + path, headers=headers, ssl=env.ssl, **kw) as resp,
    ):
        body = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
        if "json" in ctype:
            import json

            return resp.status, json.loads(body)
        return resp.status, body


WATCH = "/apis/controlplane.antrea.io/v1beta2/watch"


async def test_healthz_needs_no_token(env: Env) -> None:
    assert await call(env, "GET", "/healthz", None) == (200, b"ok")


@pytest.mark.parametrize(
    ("token", "node", "expected"),
    [
        (None, "n1", 401),
        ("bogus", "n1", 401),
        ("t-n1", "n2", 403),
        ("t-other", "n1", 403),
        ("t-n1", "", 400),
    ],
)
async def test_watch_refused(env: Env, token: str | None, node: str, expected: int) -> None:
    status, _ = await call(env, "GET", WATCH, token, params={"nodeName": node})
    assert status == expected


async def test_watch_unavailable_when_not_serving(env: Env) -> None:
    env.state["serving"] = "not the leader"
    status, body = await call(env, "GET", WATCH, "t-n1", params={"nodeName": "n1"})
    assert status == 503 and body["message"] == "not the leader"


async def test_node_watches_own_objects_with_heartbeats(env: Env) -> None:
    headers = {"Authorization": "Bearer t-n1"}
    dec = FrameDecoder()
    events: list[WatchEvent] = []
    async with (
        aiohttp.ClientSession() as s,
        s.get(env.base + WATCH, params={"nodeName": "n1"}, headers=headers, ssl=env.ssl) as resp,
    ):
        assert resp.status == 200
        while len(events) < 4:
            chunk = await asyncio.wait_for(resp.content.readany(), 5)
            events.extend(dec.feed(chunk))
    assert [e.type for e in events[:3]] == [EventType.ADDED, EventType.ADDED, EventType.BOOKMARK]
    atg = events[0].object
    assert isinstance(atg, AppliedToGroup) and {m.pod.name for m in atg.members} == {"a"}
    assert events[3].type is EventType.BOOKMARK and events[3].message == "heartbeat"


async def test_admin_lists_and_gets_nodes_cannot(env: Env) -> None:
    path = "/apis/controlplane.antrea.io/v1beta2/networkpolicies"
    assert (await call(env, "GET", path, "t-n1"))[0] == 403
    status, body = await call(env, "GET", path, "t-admin")
    assert status == 200
    (item,) = body["items"]
    assert item["metadata"]["name"] == "uid-1" and item["span"] == ["n1", "n2"]
    assert item["status"]["currentNodesRealized"] == 0
    status, body = await call(env, "GET", path + "/uid-1", "t-admin")
    assert status == 200 and body["sourceRef"]["name"] == "np1"
    assert (await call(env, "GET", path + "/nope", "t-admin"))[0] == 404
    status, body = await call(
        env,
        "GET",
        "/apis/controlplane.antrea.io/v1beta2/appliedtogroups",
        "t-admin",
        params={"nodeName": "n3"},
    )
    assert status == 200 and body["items"] == []


async def test_status_reports_are_aggregated_and_authorized(env: Env) -> None:
    path = "/apis/controlplane.antrea.io/v1beta2/networkpolicies/status"
    st1 = encode_status(NetworkPolicyNodeStatus("uid-1", "n1", 3))
    assert (await call(env, "POST", path, "t-n2", data=st1))[0] == 403
    assert (await call(env, "POST", path, "t-n1", data=st1))[0] == 201
    assert (await call(env, "POST", path, "t-n1", data=b"\x00garbage"))[0] == 400
    # an old generation does not count
    st2 = encode_status(NetworkPolicyNodeStatus("uid-1", "n2", 2))
    assert (await call(env, "POST", path, "t-n2", data=st2))[0] == 201
    _, body = await call(
        env, "GET", "/apis/controlplane.antrea.io/v1beta2/networkpolicies/uid-1", "t-admin"
    )
    assert body["status"] == {
        "phase": "Realizing",
        "currentNodesRealized": 1,
        "desiredNodesRealized": 2,
    }
    st3 = encode_status(NetworkPolicyNodeStatus("uid-1", "n2", 3))
    assert (await call(env, "POST", path, "t-n2", data=st3))[0] == 201
    _, body = await call(
        env, "GET", "/apis/controlplane.antrea.io/v1beta2/networkpolicies/uid-1", "t-admin"
    )
    assert body["status"]["currentNodesRealized"] == 2 and body["status"]["phase"] == "Realized"


async def test_status_lists_are_aggregated_and_authorized_as_a_whole(env: Env) -> None:
    path = "/apis/controlplane.antrea.io/v1beta2/networkpolicies/statuses"
    mine = NetworkPolicyNodeStatus("uid-1", "n1", 3)
    other = NetworkPolicyNodeStatus("uid-1", "n2", 3)
    # one status for another node refuses the whole list: nothing is recorded
    assert (await call(env, "POST", path, "t-n1", data=encode_statuses([mine, other])))[0] == 403
    assert (await call(env, "POST", path, "t-n1", data=encode_status(mine)))[0] == 400
    _, body = await call(
        env, "GET", "/apis/controlplane.antrea.io/v1beta2/networkpolicies/uid-1", "t-admin"
    )
    assert body["status"]["currentNodesRealized"] == 0
    assert await call(env, "POST", path, "t-n1", data=encode_statuses([mine])) == (
        201,
        {"status": "accepted", "items": 1},
    )
    assert (await call(env, "POST", path, "t-admin", data=encode_statuses([other])))[0] == 201
    _, body = await call(
        env, "GET", "/apis/controlplane.antrea.io/v1beta2/networkpolicies/uid-1", "t-admin"
    )
    assert body["status"]["currentNodesRealized"] == 2 and body["status"]["phase"] == "Realized"


async def test_controllerinfo_is_admin_only(env: Env) -> None:
    path = "/apis/system.antrea.io/v1beta1/controllerinfo"
    assert (await call(env, "GET", path, "t-n1"))[0] == 403
    assert await call(env, "GET", path, "t-admin") == (200, {"leader": "n1"})


async def test_tls_rejects_unknown_ca(env: Env) -> None:
    other_ca, _ = certs.generate_ca()
    env.ssl = certs.client_ssl_context(other_ca)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await call(env, "GET", "/healthz", None)


async def test_a_watcher_that_stops_reading_is_dropped_not_the_others(env: Env) -> None:
    """A client that never reads: its socket buffers fill, its queue overflows, it is closed;
    a reading watcher of the same node receives every frame."""
    import socket

    from antrea.apis.controlplane.types import AddressGroup

    host, port = "127.0.0.1", int(env.base.rsplit(":", 1)[1])
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # no receive autotuning
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (host, port))
    _, stuck = await asyncio.open_connection(sock=raw, ssl=env.ssl, server_hostname=host)
    stuck.write(
        f"GET {WATCH}?nodeName=n1 HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: Bearer t-n1\r\n\r\n".encode()
    )
    await stuck.drain()
    disp = env.server.dispatcher
    for _ in range(100):
        if len(disp.watchers) == 1:
            break
        await asyncio.sleep(0.01)
    dec = FrameDecoder()
    got = 0
    big = frozenset(
        GroupMember(PodReference("ns", f"p{i}"), (f"10.1.{i // 250}.{i % 250}",), "n1")
        for i in range(40)
    )
    headers = {"Authorization": "Bearer t-n1"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(env.base + WATCH, params={"nodeName": "n1"}, headers=headers, ssl=env.ssl) as resp,
    ):
        while len(disp.watchers) < 2:
            await asyncio.sleep(0.01)
        stuck_w, reader_w = sorted(disp.watchers, key=lambda w: w.id)
        stuck_w.max_queue = 200  # (kernel and TLS buffers absorb ~2 MB before the queue grows)
        reader_w.max_queue = 1_000_000  # the reader shares the test's loop: never "slow" here

        @dataclass(frozen=True)
        class Change:
            kind: Kind
            name: str
            old: Any
            new: Any
            old_span: frozenset[str]
            new_span: frozenset[str]
            patch: Any = None

        n = 2500
        for i in range(n):
            ag = AddressGroup(f"ag{i}", big)
            env.store.objs[(Kind.ADDRESS_GROUP, ag.name)] = (ag, frozenset({"n1"}))
            disp.on_change(
                Change(Kind.ADDRESS_GROUP, ag.name, None, ag, frozenset(), frozenset({"n1"}))
            )
            if i % 20 == 0:
                await asyncio.sleep(0)  # let the writers run, as the real loop would
        while got < n + 3:  # + snapshot ADDED x2 and BOOKMARK
            chunk = await asyncio.wait_for(resp.content.readany(), 10)
            assert chunk, f"the reading watcher was closed after {got} frames"
            got += sum(1 for e in dec.feed(chunk) if e.message != "heartbeat")
    assert disp.stats.watchers_dropped == 1 and stuck_w.closed and not reader_w.closed
    stuck.close()


async def test_metrics_need_a_valid_token(env: Env) -> None:
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.aiohttp import make_aiohttp_handler

    registry = CollectorRegistry()
    Gauge("antrea_controller_test_gauge", "test", registry=registry).set(3)
    env.server.metrics_handler = make_aiohttp_handler(registry)
    assert (await call(env, "GET", "/metrics", None))[0] == 401
    status, body = await call(env, "GET", "/metrics", "t-n2")
    assert status == 200 and b"antrea_controller_test_gauge 3.0" in body


class FakeKube:
    """Answers SubjectAccessReviews like RBAC with one binding: "viewer" may list and get
    controlplane.antrea.io networkpolicies and update system.antrea.io loglevels."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        spec = body["spec"]
        self.reviews.append(spec)
        attrs = spec.get("resourceAttributes") or {}
        grants = {
            ("controlplane.antrea.io", "networkpolicies", "list"),
            ("controlplane.antrea.io", "networkpolicies", "get"),
            ("system.antrea.io", "loglevels", "update"),
            ("system.antrea.io", "loglevels", "get"),
        }
        allowed = spec["user"] == "viewer" and (
            (attrs.get("group"), attrs.get("resource"), attrs.get("verb")) in grants
        )
        # "ns-viewer": a Role in namespace default on stats.antrea.io networkpolicystats
        allowed = allowed or (
            spec["user"] == "ns-viewer"
            and attrs.get("namespace") == "default"
            and (attrs.get("group"), attrs.get("resource"))
            == ("stats.antrea.io", "networkpolicystats")
        )
        return {"status": {"allowed": allowed}}


async def test_operators_are_authorized_by_subject_access_review(env: Env) -> None:
    """Not a fixed group: whoever RBAC allows (SubjectAccessReview) may use the operator API."""
    kube = FakeKube()
    TOKENS["t-viewer"] = Identity("viewer", frozenset({"system:authenticated"}))
    env.server.reviewer = AccessReviewer(kube)  # type: ignore[arg-type]
    try:
        path = "/apis/controlplane.antrea.io/v1beta2/networkpolicies"
        assert (await call(env, "GET", path, "t-viewer"))[0] == 200
        assert (await call(env, "GET", path + "/uid-1", "t-viewer"))[0] == 200
        assert (await call(env, "GET", path, "t-other"))[0] == 403
        assert kube.reviews[0]["resourceAttributes"] == {
            "verb": "list",
            "group": "controlplane.antrea.io",
            "resource": "networkpolicies",
        }
        assert kube.reviews[1]["resourceAttributes"]["name"] == "uid-1"
        groups = "/apis/controlplane.antrea.io/v1beta2/addressgroups"
        status, body = await call(env, "GET", groups, "t-viewer")
        assert status == 403 and 'cannot list resource "addressgroups"' in body["message"]
        info = "/apis/system.antrea.io/v1beta1/controllerinfo"
        assert (await call(env, "GET", info, "t-viewer"))[0] == 403
        level = "/apis/system.antrea.io/v1beta1/loglevel"
        assert (await call(env, "PUT", level + "?level=debug", "t-other"))[0] == 403
        assert await call(env, "PUT", level + "?level=debug", "t-viewer") == (
            200,
            {"level": "debug"},
        )
        assert (await call(env, "PUT", level + "?level=loud", "t-viewer"))[0] == 400
        assert await call(env, "GET", level, "t-admin") == (200, {"level": "debug"})
    finally:
        del TOKENS["t-viewer"]
        logutil.set_level("info")


async def test_endpoint_query(env: Env) -> None:
    """`antctl query endpoint`: policies applied to the pod, rules naming it as a peer."""
    y = GroupMember(PodReference("y", "b"), ("10.0.3.3",), "n2")
    env.store.objs[(Kind.ADDRESS_GROUP, "ag-y")] = (
        AddressGroup("ag-y", frozenset({y})),
        frozenset({"n1"}),
    )
    env.store.objs[(Kind.NETWORK_POLICY, "uid-2")] = (
        NetworkPolicy(
            name="uid-2",
            source_ref=NetworkPolicyReference("K8sNetworkPolicy", "default", "np2", "uid-2"),
            rules=(
                NetworkPolicyRule(Direction.OUT),
                NetworkPolicyRule(Direction.IN, from_=NetworkPolicyPeer(address_groups=("ag-y",))),
            ),
            applied_to_groups=("atg1",),
        ),
        frozenset({"n1"}),
    )
    path = "/apis/controlplane.antrea.io/v1beta2/endpointqueries"
    status, body = await call(env, "GET", path + "?namespace=default&pod=a", "t-admin")
    assert status == 200
    (ep,) = body["endpoints"]
    assert [p["name"] for p in ep["appliedPolicies"]] == ["np1", "np2"]
    assert ep["ingressSrcRules"] == [] and ep["egressDstRules"] == []
    _, body = await call(env, "GET", path + "?namespace=y&pod=b", "t-admin")
    (ep,) = body["endpoints"]
    assert ep["appliedPolicies"] == []
    assert [
        (r["policyRef"]["name"], r["ruleIndex"], r["direction"]) for r in ep["ingressSrcRules"]
    ] == [("np2", 1, "Ingress")]
    assert (await call(env, "GET", path + "?pod=a", "t-other"))[0] == 403
    assert (await call(env, "GET", path, "t-admin"))[0] == 400


async def test_controller_supportbundle(env: Env) -> None:
    import io
    import tarfile

    path = "/apis/system.antrea.io/v1beta1/supportbundle"
    assert (await call(env, "GET", path, "t-other"))[0] == 403
    status, body = await call(env, "GET", path, "t-admin")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
        tasks = tar.extractfile("controller/tasks.txt").read().decode()  # type: ignore[union-attr]
        nps = tar.extractfile("controller/networkpolicies.json").read()  # type: ignore[union-attr]
    assert {"controller/controllerinfo.json", "controller/loglevel.json"} <= names
    assert " tasks\n" in tasks and "--- " in tasks
    assert b'"uid-1"' in nps


ACNP = NetworkPolicy(
    name="uid-2",
    source_ref=NetworkPolicyReference("AntreaClusterNetworkPolicy", "", "acnp1", "uid-2"),
    rules=(
        NetworkPolicyRule(Direction.IN, name="allow-web"),
        NetworkPolicyRule(Direction.IN, name="drop-rest"),
    ),
    applied_to_groups=("atg1",),
    generation=1,
)
STATS = "/apis/stats.antrea.io/v1alpha1"


async def test_stats_reports_aggregated_across_nodes_and_served_per_kind(env: Env) -> None:
    from antrea.apis.stats.codec import encode_summary
    from antrea.apis.stats.types import NodeStatsSummary, RuleTraffic, TrafficStats

    env.store.objs[(Kind.NETWORK_POLICY, "uid-2")] = (ACNP, frozenset({"n1", "n2"}))
    path = "/apis/controlplane.antrea.io/v1beta2/nodestatssummaries"

    def report(node: str, *rules: tuple[str, str, int]) -> bytes:
        return encode_summary(
            NodeStatsSummary(
                node,
                tuple(
                    RuleTraffic(p, r, f"{node}.1", TrafficStats(s * 3, s * 300, s))
                    for p, r, s in rules
                ),
            )
        )

    n1 = report("n1", ("uid-1", "", 2), ("uid-2", "allow-web", 4))
    assert (await call(env, "POST", path, "t-n2", data=n1))[0] == 403
    assert (await call(env, "POST", path, None, data=n1))[0] == 401
    assert (await call(env, "POST", path, "t-n1", data=b"\x00junk"))[0] == 400
    assert (await call(env, "POST", path, "t-n1", data=n1))[0] == 201
    n2 = report("n2", ("uid-2", "allow-web", 5), ("uid-2", "drop-rest", 1), ("nope", "x", 9))
    assert (await call(env, "POST", path, "t-n2", data=n2))[0] == 201

    assert (await call(env, "GET", f"{STATS}/antreaclusternetworkpolicystats", "t-n1"))[0] == 403
    status, body = await call(env, "GET", f"{STATS}/antreaclusternetworkpolicystats", "t-admin")
    assert status == 200 and body["kind"] == "AntreaClusterNetworkPolicyStatsList"
    (item,) = body["items"]
    assert item == {
        "apiVersion": "stats.antrea.io/v1alpha1",
        "kind": "AntreaClusterNetworkPolicyStats",
        "metadata": {"name": "acnp1", "uid": "uid-2"},
        "trafficStats": {"packets": 30, "bytes": 3000, "sessions": 10},
        "ruleTrafficStats": [
            {"name": "allow-web", "trafficStats": {"packets": 27, "bytes": 2700, "sessions": 9}},
            {"name": "drop-rest", "trafficStats": {"packets": 3, "bytes": 300, "sessions": 1}},
        ],
    }
    status, one = await call(
        env, "GET", f"{STATS}/antreaclusternetworkpolicystats/acnp1", "t-admin"
    )
    assert status == 200 and one == item
    for p in ("networkpolicystats", "namespaces/default/networkpolicystats"):
        status, body = await call(env, "GET", f"{STATS}/{p}", "t-admin")
        assert status == 200 and body["kind"] == "NetworkPolicyStatsList", p
        (np,) = body["items"]
        assert np["metadata"] == {"name": "np1", "namespace": "default", "uid": "uid-1"}
        assert np["trafficStats"]["sessions"] == 2 and "ruleTrafficStats" not in np
    status, np = await call(
        env, "GET", f"{STATS}/namespaces/default/networkpolicystats/np1", "t-admin"
    )
    assert status == 200 and np["kind"] == "NetworkPolicyStats"
    _, body = await call(env, "GET", f"{STATS}/namespaces/other/networkpolicystats", "t-admin")
    assert body["items"] == []
    _, body = await call(env, "GET", f"{STATS}/antreanetworkpolicystats", "t-admin")
    assert body == {
        "apiVersion": "stats.antrea.io/v1alpha1",
        "kind": "AntreaNetworkPolicyStatsList",
        "items": [],
    }
    for missing in (
        "networkpolicystats/np1",  # namespaced: only under /namespaces/NS
        "namespaces/default/networkpolicystats/nope",
        "namespaces/default/antreaclusternetworkpolicystats",
        "bogusstats",
    ):
        assert (await call(env, "GET", f"{STATS}/{missing}", "t-admin"))[0] == 404, missing


async def test_proxied_token_header_authenticates_like_authorization(env: Env) -> None:
    """Through the Kubernetes API's services/proxy (antctl --via-apiserver) the token comes in
    X-Antrea-Authorization; it is reviewed exactly like Authorization."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.aiohttp import make_aiohttp_handler

    from antrea.apis.controlplane import names

    env.server.metrics_handler = make_aiohttp_handler(CollectorRegistry())
    headers = {names.PROXIED_AUTHORIZATION_HEADER: "Bearer t-n2"}
    assert (await call(env, "GET", "/metrics", None))[0] == 401
    assert (await call(env, "GET", "/metrics", None, headers=headers))[0] == 200
    bad = {names.PROXIED_AUTHORIZATION_HEADER: "Bearer nope"}
    assert (await call(env, "GET", "/metrics", None, headers=bad))[0] == 401


async def test_namespaced_stats_are_authorized_in_their_namespace(env: Env) -> None:
    kube = FakeKube()
    TOKENS["t-ns-viewer"] = Identity("ns-viewer", frozenset({"system:authenticated"}))
    env.server.reviewer = AccessReviewer(kube)  # type: ignore[arg-type]
    try:
        ok = f"{STATS}/namespaces/default/networkpolicystats"
        assert (await call(env, "GET", ok, "t-ns-viewer"))[0] == 200
        assert (await call(env, "GET", ok + "/np1", "t-ns-viewer"))[0] == 200
        assert kube.reviews[1]["resourceAttributes"] == {
            "verb": "get",
            "group": "stats.antrea.io",
            "resource": "networkpolicystats",
            "name": "np1",
            "namespace": "default",
        }
        for denied in (
            f"{STATS}/namespaces/other/networkpolicystats",
            f"{STATS}/networkpolicystats",  # all namespaces
            f"{STATS}/antreaclusternetworkpolicystats",
        ):
            assert (await call(env, "GET", denied, "t-ns-viewer"))[0] == 403, denied
    finally:
        del TOKENS["t-ns-viewer"]
