"""The embedded API server's REST semantics, driven over HTTPS like any client would."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]


class Client:
    def __init__(self, server: APIServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def req(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, JSON]:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            hdrs["Content-Type"] = ctype
        async with self.session.request(method, path, data=data, headers=hdrs) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw.startswith(b"{") else {
                "text": raw.decode()
            }

    async def watch(self, path: str, *, count: int, timeout: float = 10) -> list[JSON]:
        """Read ``count`` events (or until the stream ends)."""
        events: list[JSON] = []
        async with self.session.get(path) as resp:
            assert resp.status == 200
            async with asyncio.timeout(timeout):
                async for line in resp.content:
                    if line.strip():
                        events.append(orjson.loads(line))
                    if len(events) >= count:
                        break
        return events


def pod(
    name: str,
    *,
    ns: str = "default",
    node: str | None = None,
    labels: dict[str, str] | None = None,
    grace: int | None = None,
) -> JSON:
    spec: JSON = {
        "containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]
    }
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": spec,
    }


async def _client(server: APIServer) -> tuple[aiohttp.ClientSession, Client]:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        connector=aiohttp.TCPConnector(ssl=ctx),
    )
    return session, Client(server, session)


@pytest.fixture
async def api() -> AsyncIterator[Client]:
    server = APIServer(port=0, history=50, bookmark_interval=0.2)
    await server.start()
    session, client = await _client(server)
    try:
        yield client
    finally:
        await session.close()
        await server.stop()


PODS = "/api/v1/namespaces/default/pods"


async def test_requests_without_valid_token_are_unauthorized(api: Client) -> None:
    """No token or an unknown token gets a 401 Status; health endpoints stay open."""
    ctx = ssl.create_default_context(cadata=api.server.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as anon:
        async with anon.get(api.server.url + "/api/v1/namespaces") as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
        async with anon.get(
            api.server.url + "/api/v1/namespaces", headers={"Authorization": "Bearer nope"}
        ) as resp:
            assert resp.status == 401
        async with anon.get(api.server.url + "/healthz") as resp:
            assert resp.status == 200


async def test_discovery_lists_groups_resources_and_openapi(api: Client) -> None:
    """Discovery documents name every served resource; OpenAPI v3 advertises fieldValidation."""
    status, core = await api.req("GET", "/api/v1")
    assert status == 200
    names = {r["name"] for r in core["resources"]}
    assert {
        "pods",
        "pods/status",
        "nodes/status",
        "namespaces",
        "services",
        "endpoints",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "events",
    } <= names
    _, groups = await api.req("GET", "/apis")
    group_names = {g["name"] for g in groups["groups"]}
    assert {
        "networking.k8s.io",
        "coordination.k8s.io",
        "authentication.k8s.io",
        "apiextensions.k8s.io",
    } <= group_names
    status, np = await api.req("GET", "/apis/networking.k8s.io/v1")
    assert status == 200 and np["resources"][0]["kind"] == "NetworkPolicy"
    _, version = await api.req("GET", "/version")
    assert version["major"] == "1"
    _, index = await api.req("GET", "/openapi/v3")
    url = index["paths"]["apis/networking.k8s.io/v1"]["serverRelativeURL"]
    _, doc = await api.req("GET", url)
    patch = next(p["patch"] for p in doc["paths"].values() if "patch" in p)
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "NetworkPolicy"
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    status, _ = await api.req("GET", "/apis/nope.example.com/v1")
    assert status == 404


async def test_create_fills_metadata_and_rejects_duplicates(api: Client) -> None:
    """Create assigns uid/resourceVersion/creationTimestamp/generation; a second create is 409."""
    status, obj = await api.req("POST", PODS, pod("p1"))
    assert status == 201
    meta = obj["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    assert obj["status"]["phase"] == "Pending"
    status, err = await api.req("POST", PODS, pod("p1"))
    assert status == 409 and err["reason"] == "AlreadyExists"
    assert err["message"] == 'pods "p1" already exists'
    status, err = await api.req("GET", PODS + "/nope")
    assert status == 404 and err["reason"] == "NotFound" and err["details"]["kind"] == "pods"


async def test_generate_name_and_missing_name(api: Client) -> None:
    body = pod("x")
    body["metadata"] = {"generateName": "web-"}
    status, obj = await api.req("POST", PODS, body)
    assert status == 201 and obj["metadata"]["name"].startswith("web-")
    assert len(obj["metadata"]["name"]) == len("web-") + 5
    body["metadata"] = {}
    status, err = await api.req("POST", PODS, body)
    assert status == 422 and err["reason"] == "Invalid"


async def test_create_in_missing_or_terminating_namespace(api: Client) -> None:
    status, err = await api.req(
        "POST", "/api/v1/namespaces/ghost/configmaps", {"metadata": {"name": "c"}}
    )
    assert status == 404 and err["details"]["kind"] == "namespaces"
    status, err = await api.req(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "c", "namespace": "other"}},
    )
    assert status == 400 and err["reason"] == "BadRequest"


async def test_update_uses_optimistic_concurrency_and_bumps_generation(api: Client) -> None:
    _, obj = await api.req("POST", PODS, pod("p"))
    stale = orjson.loads(orjson.dumps(obj))
    obj["metadata"]["labels"] = {"a": "b"}
    status, updated = await api.req("PUT", PODS + "/p", obj)
    assert status == 200
    assert int(updated["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    assert updated["metadata"]["generation"] == 1  # metadata-only change
    stale["metadata"]["labels"] = {"c": "d"}
    status, err = await api.req("PUT", PODS + "/p", stale)
    assert status == 409 and err["reason"] == "Conflict"
    assert "the object has been modified" in err["message"]
    updated["spec"]["activeDeadlineSeconds"] = 5
    status, again = await api.req("PUT", PODS + "/p", updated)
    assert status == 200 and again["metadata"]["generation"] == 2
    assert again["metadata"]["uid"] == obj["metadata"]["uid"]
    # An update that changes nothing keeps the resourceVersion.
    status, same = await api.req("PUT", PODS + "/p", again)
    assert (
        status == 200
        and same["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    )
    status, err = await api.req("PUT", PODS + "/ghost", pod("ghost"))
    assert status == 404


async def test_status_subresource_split(api: Client) -> None:
    """Main-resource writes ignore status; /status writes ignore everything else."""
    _, obj = await api.req("POST", PODS, pod("p"))
    obj["status"] = {"phase": "Running", "podIP": "10.0.0.5"}
    obj["metadata"]["labels"] = {"x": "y"}
    _, main = await api.req("PUT", PODS + "/p", obj)
    assert main["status"]["phase"] == "Pending" and main["metadata"]["labels"] == {"x": "y"}
    main["status"] = {"phase": "Running", "podIP": "10.0.0.5"}
    main["spec"]["nodeName"] = "sneaky"
    main["metadata"]["labels"] = {"changed": "yes"}
    status, st = await api.req("PUT", PODS + "/p/status", main)
    assert status == 200
    assert st["status"]["podIP"] == "10.0.0.5" and "nodeName" not in st["spec"]
    assert st["metadata"]["labels"] == {"x": "y"} and st["metadata"]["generation"] == 1
    status, patched = await api.req(
        "PATCH",
        PODS + "/p/status",
        {"status": {"phase": "Succeeded"}},
        ctype="application/merge-patch+json",
    )
    assert status == 200 and patched["status"]["phase"] == "Succeeded"
    status, _ = await api.req("PUT", "/api/v1/namespaces/default/configmaps/x/status", {})
    assert status == 404


async def test_patch_types(api: Client) -> None:
    _, _ = await api.req("POST", PODS, pod("p", labels={"a": "1"}))
    status, obj = await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"labels": {"b": "2"}}},
        ctype="application/merge-patch+json",
    )
    assert status == 200 and obj["metadata"]["labels"] == {"a": "1", "b": "2"}
    status, obj = await api.req(
        "PATCH",
        PODS + "/p",
        [{"op": "remove", "path": "/metadata/labels/a"}],
        ctype="application/json-patch+json",
    )
    assert status == 200 and obj["metadata"]["labels"] == {"b": "2"}
    status, obj = await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"annotations": {"n": "v"}}},
        ctype="application/strategic-merge-patch+json",
    )
    assert status == 200 and obj["metadata"]["annotations"] == {"n": "v"}
    status, err = await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"resourceVersion": "1"}},
        ctype="application/merge-patch+json",
    )
    assert status == 409 and err["reason"] == "Conflict"
    status, err = await api.req("PATCH", PODS + "/ghost", {}, ctype="application/merge-patch+json")
    assert status == 404
    status, err = await api.req(
        "PATCH", PODS + "/p", b"metadata: {labels: {c: '3'}}", ctype="application/apply-patch+yaml"
    )
    assert status == 400  # fieldManager is required
    status, obj = await api.req(
        "PATCH",
        PODS + "/p?fieldManager=me",
        b"apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {c: '3'}}\n",
        ctype="application/apply-patch+yaml",
    )
    assert status == 200 and obj["metadata"]["labels"] == {"b": "2", "c": "3"}
    status, obj = await api.req(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/applied?fieldManager=me",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {k: v}\n",
        ctype="application/apply-patch+yaml",
    )
    assert status == 201 and obj["data"] == {"k": "v"}


async def test_list_with_selectors_and_pagination(api: Client) -> None:
    for i, (env, node) in enumerate([("prod", "n1"), ("dev", "n1"), ("prod", "n2"), ("qa", "n2")]):
        await api.req("POST", PODS, pod(f"p{i}", labels={"env": env}, node=node))
    _, lst = await api.req("GET", PODS + "?labelSelector=env+in+(prod,qa)")
    assert [o["metadata"]["name"] for o in lst["items"]] == ["p0", "p2", "p3"]
    assert lst["kind"] == "PodList" and lst["metadata"]["resourceVersion"]
    _, lst = await api.req(
        "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2&labelSelector=env!%3Dqa"
    )
    assert [o["metadata"]["name"] for o in lst["items"]] == ["p2"]
    _, lst = await api.req("GET", PODS + "?fieldSelector=metadata.name%3Dp1")
    assert [o["metadata"]["name"] for o in lst["items"]] == ["p1"]
    status, err = await api.req("GET", PODS + "?labelSelector=env+in+(")
    assert status == 400 and err["reason"] == "BadRequest"
    status, err = await api.req("GET", PODS + "?fieldSelector=spec.bogus%3D1")
    assert status == 400
    _, page1 = await api.req("GET", PODS + "?limit=3")
    assert len(page1["items"]) == 3 and page1["metadata"]["remainingItemCount"] == 1
    _, page2 = await api.req("GET", PODS + "?limit=3&continue=" + page1["metadata"]["continue"])
    assert [o["metadata"]["name"] for o in page2["items"]] == ["p3"]
    assert "continue" not in page2["metadata"]


async def test_table_output(api: Client) -> None:
    await api.req("POST", PODS, pod("p", node="n1"))
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    _, table = await api.req("GET", PODS, headers=headers)
    assert table["kind"] == "Table"
    cols = [c["name"] for c in table["columnDefinitions"]]
    assert cols[:5] == ["Name", "Ready", "Status", "Restarts", "Age"] and "Node" in cols
    row = table["rows"][0]
    assert row["cells"][0] == "p" and row["cells"][1] == "0/1" and row["cells"][2] == "Pending"
    assert row["object"]["kind"] == "PartialObjectMetadata"
    _, one = await api.req("GET", PODS + "/p", headers=headers)
    assert one["kind"] == "Table" and len(one["rows"]) == 1


async def test_watch_from_resource_version_and_bookmarks(api: Client) -> None:
    _, created = await api.req("POST", PODS, pod("p"))
    rv = created["metadata"]["resourceVersion"]
    await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"labels": {"a": "b"}}},
        ctype="application/merge-patch+json",
    )
    await api.req("DELETE", PODS + "/p")
    events = await api.watch(
        f"{PODS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true", count=3
    )
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["name"] == "p"
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(rv)
    bookmark = events[2]["object"]
    assert bookmark["kind"] == "Pod"
    assert (
        bookmark["metadata"]["resourceVersion"]
        == events[1]["object"]["metadata"]["resourceVersion"]
    )


async def test_watch_without_version_starts_with_current_state(api: Client) -> None:
    await api.req("POST", PODS, pod("a"))

    async def later() -> None:
        await asyncio.sleep(0.2)
        await api.req("POST", PODS, pod("b"))

    task = asyncio.create_task(later())
    events = await api.watch("/api/v1/watch/namespaces/default/pods", count=2)
    await task
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


async def test_watch_selector_transitions(api: Client) -> None:
    """An object leaving a watch's selector is seen as DELETED, entering as ADDED."""
    _, obj = await api.req("POST", PODS, pod("p", labels={"app": "web"}))
    rv = obj["metadata"]["resourceVersion"]
    await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"labels": {"app": "db"}}},
        ctype="application/merge-patch+json",
    )
    await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"labels": {"app": "web"}}},
        ctype="application/merge-patch+json",
    )
    events = await api.watch(
        f"{PODS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb", count=2
    )
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


async def test_watch_too_old_version_is_gone(api: Client) -> None:
    """Beyond the history window, a watch gets an ERROR event with a 410 Status."""
    _, first = await api.req("POST", PODS, pod("p"))
    for i in range(60):  # history=50 in the fixture
        await api.req(
            "PATCH",
            PODS + "/p",
            {"metadata": {"labels": {"i": str(i)}}},
            ctype="application/merge-patch+json",
        )
    events = await api.watch(
        f"{PODS}?watch=1&resourceVersion={first['metadata']['resourceVersion']}", count=1
    )
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_watch_timeout_ends_stream(api: Client) -> None:
    events = await api.watch(
        f"{PODS}?watch=1&timeoutSeconds=1&resourceVersion=0", count=100, timeout=15
    )
    assert events == []


async def test_watch_send_initial_events_bookmark(api: Client) -> None:
    await api.req("POST", PODS, pod("a"))
    events = await api.watch(
        f"{PODS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        count=2,
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_delete_semantics(api: Client) -> None:
    """Plain objects go at once; pods on a node linger with deletionTimestamp until
    a zero-grace delete (the kubelet's) or the grace period's end."""
    await api.req("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    status, obj = await api.req("DELETE", "/api/v1/namespaces/default/configmaps/c")
    assert status == 200 and obj["metadata"]["name"] == "c"
    status, _ = await api.req("GET", "/api/v1/namespaces/default/configmaps/c")
    assert status == 404
    status, _ = await api.req("DELETE", "/api/v1/namespaces/default/configmaps/c")
    assert status == 404

    await api.req("POST", PODS, pod("unbound"))
    await api.req("DELETE", PODS + "/unbound")
    assert (await api.req("GET", PODS + "/unbound"))[0] == 404

    await api.req("POST", PODS, pod("bound", node="n1"))
    status, obj = await api.req("DELETE", PODS + "/bound")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["deletionGracePeriodSeconds"] == 30
    status, still = await api.req("GET", PODS + "/bound")
    assert status == 200 and still["metadata"]["deletionTimestamp"]
    await api.req("DELETE", PODS + "/bound", {"gracePeriodSeconds": 0})
    assert (await api.req("GET", PODS + "/bound"))[0] == 404

    await api.req("POST", PODS, pod("short", node="n1", grace=1))
    await api.req("DELETE", PODS + "/short")
    for _ in range(100):
        if (await api.req("GET", PODS + "/short"))[0] == 404:
            break
        await asyncio.sleep(0.1)
    assert (await api.req("GET", PODS + "/short"))[0] == 404


async def test_delete_preconditions_and_finalizers(api: Client) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    _, cm = await api.req("POST", cms, {"metadata": {"name": "f", "finalizers": ["x/y"]}})
    status, _err = await api.req("DELETE", cms + "/f", {"preconditions": {"uid": "wrong"}})
    assert status == 409
    status, marked = await api.req("DELETE", cms + "/f")
    assert status == 200 and marked["metadata"]["deletionTimestamp"]
    assert (await api.req("GET", cms + "/f"))[0] == 200
    await api.req(
        "PATCH",
        cms + "/f",
        {"metadata": {"finalizers": None}},
        ctype="application/merge-patch+json",
    )
    assert (await api.req("GET", cms + "/f"))[0] == 404
    assert cm["metadata"]["uid"]


async def test_namespace_deletion_removes_contents(api: Client) -> None:
    await api.req("POST", "/api/v1/namespaces", {"metadata": {"name": "tmp"}})
    _, ns = await api.req("GET", "/api/v1/namespaces/tmp")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "tmp"
    assert ns["status"]["phase"] == "Active"
    await api.req("POST", "/api/v1/namespaces/tmp/configmaps", {"metadata": {"name": "c"}})
    await api.req("POST", "/api/v1/namespaces/tmp/pods", pod("p", ns="tmp"))
    status, _ = await api.req("DELETE", "/api/v1/namespaces/tmp")
    assert status == 200
    assert (await api.req("GET", "/api/v1/namespaces/tmp"))[0] == 404
    _, lst = await api.req("GET", "/api/v1/namespaces/tmp/configmaps")
    assert lst["items"] == []


async def test_namespace_with_graceful_pods_terminates(api: Client) -> None:
    await api.req("POST", "/api/v1/namespaces", {"metadata": {"name": "tmp"}})
    await api.req("POST", "/api/v1/namespaces/tmp/pods", pod("p", ns="tmp", node="n1"))
    await api.req("DELETE", "/api/v1/namespaces/tmp")
    _, ns = await api.req("GET", "/api/v1/namespaces/tmp")
    assert ns["status"]["phase"] == "Terminating"
    status, err = await api.req(
        "POST", "/api/v1/namespaces/tmp/configmaps", {"metadata": {"name": "c"}}
    )
    assert status == 403 and err["reason"] == "Forbidden"
    await api.req("DELETE", "/api/v1/namespaces/tmp/pods/p?gracePeriodSeconds=0")
    assert (await api.req("GET", "/api/v1/namespaces/tmp"))[0] == 404


async def test_deletecollection(api: Client) -> None:
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        await api.req("POST", PODS, pod(name, labels={"app": app}))
    status, res = await api.req("DELETE", PODS + "?labelSelector=app%3Dx")
    assert status == 200 and len(res["items"]) == 2
    _, lst = await api.req("GET", PODS)
    assert [o["metadata"]["name"] for o in lst["items"]] == ["c"]


async def test_namespaces_have_no_deletecollection(api: Client) -> None:
    status, err = await api.req("DELETE", "/api/v1/namespaces")
    assert status == 405 and err["reason"] == "MethodNotAllowed"
    assert (await api.req("GET", "/api/v1/namespaces/default"))[0] == 200


async def test_token_review(api: Client) -> None:
    api.server.add_token("node1-token", user="system:node:node1", uid="n1", groups=["system:nodes"])
    body: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "node1-token"},
    }
    status, review = await api.req("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)
    assert status == 201
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == "system:node:node1"
    assert "system:nodes" in review["status"]["user"]["groups"]
    body["spec"]["token"] = "bogus"
    _, review = await api.req("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)
    assert not review["status"].get("authenticated")


async def test_binding_assigns_node_once(api: Client) -> None:
    await api.req("POST", PODS, pod("p"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"},
    }
    status, _ = await api.req("POST", PODS + "/p/binding", binding)
    assert status == 201
    _, obj = await api.req("GET", PODS + "/p")
    assert obj["spec"]["nodeName"] == "n1"
    status, _err = await api.req("POST", PODS + "/p/binding", binding)
    assert status == 409


async def test_networkpolicy_validation_and_defaults(api: Client) -> None:
    base = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
    bad = {
        "metadata": {"name": "bad"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]},
    }
    status, err = await api.req("POST", base, bad)
    assert status == 422 and err["reason"] == "Invalid"
    assert any(c["field"] == "spec.ingress[0].ports[0].port" for c in err["details"]["causes"])
    assert (await api.req("GET", base + "/bad"))[0] == 404
    good = {
        "metadata": {"name": "good"},
        "spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]},
    }
    status, obj = await api.req("POST", base, good)
    assert status == 201
    assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert obj["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"


async def test_services_get_cluster_ips(api: Client) -> None:
    svcs = "/api/v1/namespaces/default/services"
    _, a = await api.req(
        "POST", svcs, {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}
    )
    _, b = await api.req(
        "POST", svcs, {"metadata": {"name": "b"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    assert a["spec"]["ports"][0]["targetPort"] == 80


SCHEMA = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


async def test_custom_resources_are_served(api: Client) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": SCHEMA,
                },
                {"name": "v1alpha1", "served": True, "storage": False, "schema": SCHEMA},
            ],
        },
    }
    status, created = await api.req(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert status == 201, created
    assert {c["type"] for c in created["status"]["conditions"]} >= {"Established"}
    _, groups = await api.req("GET", "/apis")
    example = next(g for g in groups["groups"] if g["name"] == "example.com")
    assert example["preferredVersion"]["version"] == "v1"
    _, res = await api.req("GET", "/apis/example.com/v1")
    assert {r["name"] for r in res["resources"]} == {"widgets", "widgets/status"}
    base = "/apis/example.com/v1/namespaces/default/widgets"
    status, w = await api.req(
        "POST",
        base,
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
            "status": {"ready": True},
        },
    )
    assert status == 201 and "status" not in w and w["metadata"]["generation"] == 1
    _, w = await api.req(
        "PATCH", base + "/w", {"spec": {"size": 2}}, ctype="application/merge-patch+json"
    )
    assert w["metadata"]["generation"] == 2
    _, old = await api.req("GET", "/apis/example.com/v1alpha1/namespaces/default/widgets/w")
    assert old["apiVersion"] == "example.com/v1alpha1" and old["spec"]["size"] == 2
    status, _ = await api.req(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    )
    assert status == 200
    status, _ = await api.req("GET", base + "/w")
    assert status == 404
    status, _ = await api.req("GET", "/apis/example.com/v1")
    assert status == 404
    bad = dict(crd, metadata={"name": "wrong.example.com"})
    status, _err = await api.req(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad
    )
    assert status == 422


async def test_protobuf_bodies_from_typed_clients(api: Client) -> None:
    """kubectl's typed clients send protobuf; the common kinds decode."""

    def field(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload

    meta = field(1, b"pb-ns") + field(11, field(1, b"team") + field(2, b"blue"))
    raw = field(1, meta)
    type_meta = field(1, b"v1") + field(2, b"Namespace")
    body = b"k8s\x00" + field(1, type_meta) + field(2, raw)
    status, obj = await api.req(
        "POST", "/api/v1/namespaces", body, ctype="application/vnd.kubernetes.protobuf"
    )
    assert status == 201, obj
    assert obj["metadata"]["name"] == "pb-ns" and obj["metadata"]["labels"]["team"] == "blue"


async def test_persistence_survives_restart(tmp_path: Any) -> None:
    """With a data directory, objects and the resourceVersion counter survive a restart."""
    server = APIServer(port=0, data_dir=tmp_path)
    await server.start()
    session, client = await _client(server)
    try:
        await client.req("POST", PODS, pod("keep"))
        await client.req("POST", PODS, pod("gone"))
        await client.req("DELETE", PODS + "/gone")
        _, lst = await client.req("GET", PODS)
        rv = int(lst["metadata"]["resourceVersion"])
        token = server.admin_token
    finally:
        await session.close()
        await server.stop()
    server = APIServer(port=0, data_dir=tmp_path)
    await server.start()
    session, client = await _client(server)
    try:
        assert server.admin_token == token
        _, lst = await client.req("GET", PODS)
        assert [o["metadata"]["name"] for o in lst["items"]] == ["keep"]
        _, obj = await client.req("POST", PODS, pod("new"))
        assert int(obj["metadata"]["resourceVersion"]) > rv
        events = await client.watch(f"{PODS}?watch=1&resourceVersion=1", count=1)
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
    finally:
        await session.close()
        await server.stop()


async def test_field_validation_strict_rejects_and_warn_warns(api: Client) -> None:
    """Unknown fields: Strict (kubectl's default) is a 400, Warn a Warning header."""
    base = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
    typo = {"metadata": {"name": "t"}, "spec": {"podSelector": {}, "ingres": [{}]}}
    status, err = await api.req("POST", base + "?fieldValidation=Strict", typo)
    assert status == 400 and 'unknown field "spec.ingres"' in err["message"]
    async with api.session.post(
        base, data=orjson.dumps(typo), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 201
        assert 'unknown field \\"spec.ingres\\"' in resp.headers.get("Warning", "")


async def test_custom_resource_schema_prunes_defaults_and_validates(api: Client) -> None:
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["tier"],
                    "properties": {
                        "tier": {"type": "string", "enum": ["low", "high"]},
                        "priority": {"type": "integer", "minimum": 1, "default": 5},
                        "ports": {"type": "array", "items": {"x-kubernetes-int-or-string": True}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                },
            },
        }
    }
    crd = {
        "metadata": {"name": "rules.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {
                "plural": "rules",
                "singular": "rule",
                "kind": "Rule",
                "listKind": "RuleList",
            },
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema}],
        },
    }
    status, _ = await api.req(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert status == 201
    base = "/apis/example.com/v1/rules"
    good = {
        "apiVersion": "example.com/v1",
        "kind": "Rule",
        "metadata": {"name": "r"},
        "spec": {"tier": "low", "bogus": 1, "ports": [80, "http"], "extra": {"any": "thing"}},
    }
    status, obj = await api.req("POST", base, good)
    assert status == 201, obj
    assert obj["spec"] == {
        "tier": "low",
        "priority": 5,
        "ports": [80, "http"],
        "extra": {"any": "thing"},
    }
    bad = {
        "apiVersion": "example.com/v1",
        "kind": "Rule",
        "metadata": {"name": "b"},
        "spec": {"tier": "mid", "priority": 0, "ports": [True]},
    }
    status, err = await api.req("POST", base, bad)
    assert status == 422
    fields = {c["field"] for c in err["details"]["causes"]}
    assert fields == {"spec.tier", "spec.priority", "spec.ports[0]"}
    strict = dict(good, metadata={"name": "s"})
    status, err = await api.req("POST", base + "?fieldValidation=Strict", strict)
    assert status == 400 and 'unknown field "spec.bogus"' in err["message"]
    status, err = await api.req(
        "POST",
        base,
        {"apiVersion": "example.com/v1", "kind": "Rule", "metadata": {"name": "c"}, "spec": {}},
    )
    assert status == 422 and err["details"]["causes"][0]["field"] == "spec.tier"


async def test_old_events_expire(api: Client) -> None:
    """Core Events live for the event TTL, like kube-apiserver's --event-ttl."""
    events = "/api/v1/namespaces/default/events"
    old = {
        "metadata": {"name": "old"},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "Test",
        "lastTimestamp": "2020-01-01T00:00:00Z",
    }
    await api.req("POST", events, old)
    await api.req("POST", events, dict(old, metadata={"name": "new"}, lastTimestamp=None))
    assert api.server.handlers.deletions.expire_events(3600) == 1
    _, lst = await api.req("GET", events)
    assert [e["metadata"]["name"] for e in lst["items"]] == ["new"]


async def test_slow_patch_body_loses_no_update(api: Client) -> None:
    """A patch whose body arrives slowly applies to the object as it is once the body is in,
    not as it was when the request started."""
    await api.req("POST", PODS, pod("p"))
    started = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"metadata": {"labels": '
        started.set()
        await asyncio.sleep(0.5)
        yield b'{"slow": "x"}}}'

    async def slow_patch() -> int:
        async with api.session.patch(
            PODS + "/p", data=slow_body(), headers={"Content-Type": "application/merge-patch+json"}
        ) as resp:
            return resp.status

    task = asyncio.create_task(slow_patch())
    await started.wait()
    await asyncio.sleep(0.1)
    status, _ = await api.req(
        "PATCH",
        PODS + "/p",
        {"metadata": {"labels": {"fast": "y"}}},
        ctype="application/merge-patch+json",
    )
    assert status == 200
    assert await task == 200
    _, obj = await api.req("GET", PODS + "/p")
    assert obj["metadata"]["labels"] == {"fast": "y", "slow": "x"}


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"name": 5}},
        {"metadata": {"name": "m", "labels": ["a"]}},
        {"metadata": {"name": "m", "labels": {"a": 1}}},
        {"metadata": {"generateName": 3}},
        {"metadata": {"name": "m", "finalizers": "x"}},
        {"metadata": {"name": "m"}, "spec": "x"},
    ],
)
async def test_undecodable_bodies_are_bad_requests(api: Client, body: JSON) -> None:
    """Wrongly typed fields are a 400 (as the real server's decoder says), never a 500; a
    patch whose result cannot be decoded is a 422 (upstream's "Invalid" on the patch)."""
    status, err = await api.req("POST", PODS, body)
    assert status == 400 and err["reason"] == "BadRequest", err
    await api.req("POST", PODS, pod("ok"))
    status, err = await api.req(
        "PATCH", PODS + "/ok", {"spec": "x"}, ctype="application/merge-patch+json"
    )
    assert status == 422 and err["reason"] == "Invalid", err


async def test_restart_keeps_crds_and_pending_deletions(tmp_path: Any) -> None:
    """After a restart, custom resources are served again and graceful deletions resume."""
    crd = {
        "metadata": {"name": "gizmos.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "gizmos",
                "singular": "gizmo",
                "kind": "Gizmo",
                "listKind": "GizmoList",
            },
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": SCHEMA}],
        },
    }
    gizmos = "/apis/example.com/v1/namespaces/default/gizmos"
    server = APIServer(port=0, data_dir=tmp_path)
    await server.start()
    session, client = await _client(server)
    try:
        await client.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        status, _ = await client.req(
            "POST",
            gizmos,
            {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}},
        )
        assert status == 201
        await client.req("POST", PODS, pod("slow", node="n1", grace=1))
        await client.req("DELETE", PODS + "/slow")
    finally:
        await session.close()
        await server.stop()
    server = APIServer(port=0, data_dir=tmp_path)
    await server.start()
    session, client = await _client(server)
    try:
        status, obj = await client.req("GET", gizmos + "/g")
        assert status == 200 and obj["kind"] == "Gizmo"
        for _ in range(100):
            if (await client.req("GET", PODS + "/slow"))[0] == 404:
                break
            await asyncio.sleep(0.1)
        assert (await client.req("GET", PODS + "/slow"))[0] == 404
    finally:
        await session.close()
        await server.stop()
