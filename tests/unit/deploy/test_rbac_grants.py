"""Least privilege, checked against the code: deploy/antrea.yml grants each role exactly the API
requests it makes.

The roles' real code runs against the embedded API server with a recording ``ApiClient``: a whole
controller candidate (informers, leader election, CA, Endpoints, TokenReview), and the agent's
API users (its Node API, controller discovery, and the HTTPS endpoint's reviews). Every request
is turned into RBAC attributes (verb, group, resource, namespace, name) and must be allowed by
the role's ClusterRole + Role; every grant in the manifest must be used by some request. A scan
of the source keeps the list of modules that call the API in step with what is driven here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from antrea.agent import controlplane_client
from antrea.agent.kube import ApiClientNodeAPI, NodeEvent, node_informer
from antrea.controller import controller as controller_mod
from antrea.controller.config import ControllerConfig
from antrea.controller.controller import ControllerCandidate
from antrea.k8s.resources import ApiClientResources, KubeError, load_api_client, ns_path
from antrea.k8s.reviews import AccessReviewer, Identity, TokenAuthenticator
from antrea.testbed.apiserver.server import APIServer
from antrea.testbed.lab import identities

REPO = Path(__file__).resolve().parents[3]
MANIFEST = REPO / "deploy" / "antrea.yml"
NS = "kube-system"
# Modules that call the Kubernetes API, and which role's run below exercises them.
API_CALLERS = {
    "agent/kube.py": "agent",
    "k8s/reviews.py": "both",
    "k8s/lookup.py": "agent",
    "controller/admission/webhook.py": "controller",
    "controller/certs.py": "controller",
    "controller/controller.py": "controller",
    "controller/endpointslice.py": "controller",
    "controller/leader.py": "controller",
    "controller/policystatus.py": "controller",
    "controller/tiers.py": "controller",
    "k8s/informer.py": "both",
    "k8s/resources.py": "both",
}
NAMES = {"endpoints": "antrea", "endpointslices": "antrea", "configmaps": "antrea-ca"}
CALL_SITE = re.compile(r"call_api\(|kube\.(get|create|replace)\(")


@dataclass(frozen=True)
class Request:
    verb: str
    group: str
    resource: str  # "pods" or "pods/status"
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource} {where}{self.name}"


def attributes(method: str, path: str, query: dict[str, str]) -> Request:
    """RBAC request attributes of one REST call, as kube-apiserver derives them."""
    parts = [p for p in path.split("?", maxsplit=1)[0].split("/") if p]
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    namespace = ""
    if len(rest) > 2 and rest[0] == "namespaces":  # /namespaces/NS/<resource>...
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return Request(verb, group, resource, namespace, name)


def recording(api_client: Any, log: list[Request]) -> Any:
    original = api_client.call_api

    async def call_api(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        query = {str(k): str(v) for k, v in kwargs.get("query_params") or []}
        log.append(attributes(method, path, query))
        return await original(path, method, *args, **kwargs)

    api_client.call_api = call_api
    return api_client


@dataclass(frozen=True)
class Grant:
    verb: str
    group: str
    resource: str
    namespace: str  # "" = cluster-wide (ClusterRole)
    name: str  # "" = any

    def allows(self, r: Request) -> bool:
        return (
            self.verb == r.verb
            and self.group == r.group
            and self.resource == r.resource
            and (not self.namespace or self.namespace == r.namespace)
            and (not self.name or self.name == r.name)
        )


def grants(account: str) -> set[Grant]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    roles = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs
    }
    out: set[Grant] = set()
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": account, "namespace": NS} not in b["subjects"]:
            continue
        ns = b["metadata"].get("namespace", "")
        ref = b["roleRef"]
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"])]
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            for g in rule["apiGroups"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [""]:
                            out.add(Grant(verb, g, res, ns, name))
    return out


def check(account: str, requests: list[Request]) -> None:
    granted = grants(account)
    denied = sorted({str(r) for r in requests if not any(g.allows(r) for g in granted)})
    assert not denied, f"{account} makes requests its roles do not allow: {denied}"
    unused = sorted(
        f"{g.verb} {g.group or 'core'}/{g.resource} {g.namespace}/{g.name}"
        for g in granted
        if not any(g.allows(r) for r in requests)
    )
    assert not unused, f"{account} is granted what its code never does: {unused}"


def _updated(log: list[Request], resource: str) -> bool:
    return any(x.verb == "update" and x.resource == resource for x in log)


async def eventually(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_every_module_calling_the_api_is_driven_here() -> None:
    found = {
        str(p.relative_to(REPO / "src" / "antrea"))
        for p in (REPO / "src" / "antrea").rglob("*.py")
        if p.relative_to(REPO / "src" / "antrea").parts[0] not in ("apiserver", "lab", "antctl")
        and CALL_SITE.search(p.read_text())
    }
    assert found == set(API_CALLERS), (
        "modules calling the Kubernetes API changed: drive the new calls in this test and "
        f"grant them in deploy/antrea.yml ({sorted(found ^ set(API_CALLERS))})"
    )


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    server = APIServer(port=0)
    await server.start()
    server.ensure_objects(identities.manifest_crd_objects())  # as `kubectl apply` installs them
    server.ensure_objects(identities.manifest_admission_objects())
    server.write_kubeconfig(tmp_path / "admin.kubeconfig")
    clients: list[Any] = []

    async def client() -> Any:
        c = await load_api_client(str(tmp_path / "admin.kubeconfig"))
        clients.append(c)
        return c

    try:
        admin = ApiClientResources(await client())
        await admin.create(
            "/api/v1/nodes",
            {
                "metadata": {"name": "n1"},
                "spec": {"podCIDR": "10.10.1.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
            },
        )
        yield admin, client
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()
        await server.stop()


async def test_controller_grants_match_its_calls(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    admin, client = api
    monkeypatch.setattr(controller_mod, "ENDPOINTS_RECHECK", 0.1)
    log: list[Request] = []
    api_client = recording(await client(), log)
    cfg = ControllerConfig(
        node_name="n1",
        controller_api_port=0,
        bind_address="127.0.0.1",
        lease_duration=3.0,
        renew_deadline=2.0,
        retry_period=0.2,
    )
    cand = ControllerCandidate(cfg, ApiClientResources(api_client), api_client)
    task = asyncio.get_running_loop().create_task(cand.run())
    try:
        await eventually(lambda: cand.published_at is not None, "the leader's Endpoints")
        # Someone else's stale Endpoints and CA ConfigMap: the leader puts them right (update).
        for path, field, value in (
            (ns_path("v1", NS, "endpoints", "antrea"), "subsets", []),
            (ns_path("discovery.k8s.io/v1", NS, "endpointslices", "antrea"), "endpoints", []),
            (ns_path("v1", NS, "configmaps", "antrea-ca"), "data", {"ca.crt": "stale"}),
        ):
            obj = await admin.get(path)
            obj[field] = value
            await admin.replace(path, obj)
        await eventually(
            lambda: any(r.verb == "update" and r.resource == "endpoints" for r in log),
            "endpoints update",
        )
        await eventually(
            lambda: any(r.verb == "update" and r.resource == "endpointslices" for r in log),
            "endpointslice update",
        )
        await eventually(
            lambda: any(r.verb == "update" and r.resource == "configmaps" for r in log),
            "configmap update",
        )
        # The leader injected its CA into the webhook configurations (update) and the static
        # tiers were created through its admission webhooks.
        await eventually(
            lambda: any(
                r.verb == "update" and r.resource == "mutatingwebhookconfigurations" for r in log
            ),
            "caBundle injection",
        )
        await eventually(
            lambda: sum(r.verb == "create" and r.resource == "tiers" for r in log) >= 6,
            "static tiers",
        )
        # Antrea-native policies get their status written by the leader.
        spec = {"priority": 1, "appliedTo": [{"podSelector": {}}], "ingress": []}
        await admin.create(
            "/apis/crd.antrea.io/v1beta1/clusternetworkpolicies",
            {"apiVersion": "crd.antrea.io/v1beta1", "kind": "ClusterNetworkPolicy",
             "metadata": {"name": "p"}, "spec": spec},
        )  # fmt: skip
        await admin.create(
            "/apis/crd.antrea.io/v1beta1/namespaces/default/networkpolicies",
            {"apiVersion": "crd.antrea.io/v1beta1", "kind": "NetworkPolicy",
             "metadata": {"name": "p", "namespace": "default"}, "spec": spec},
        )  # fmt: skip
        for resource in ("clusternetworkpolicies/status", "networkpolicies/status"):
            await eventually(
                partial(_updated, log, resource),
                f"{resource} update",
            )
        await eventually(cand.inputs.synced.is_set, "informers")
        watching = len(cand.inputs.informers)  # the resources the compiler consumes
        await eventually(
            lambda: len({(r.group, r.resource) for r in log if r.verb == "watch"}) == watching,
            f"watches ({sorted(set(map(str, log)))})",
        )
        assert await cand.authenticate("no-such-token") is None  # an agent's token review
        # antctl users who are not system:masters: a SubjectAccessReview against RBAC.
        await AccessReviewer(ApiClientResources(api_client)).allowed_resource(
            Identity("someone"), "list", "controlplane.antrea.io", "networkpolicies"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    check("antrea-controller", log)


async def test_agent_grants_match_its_calls(api: Any) -> None:
    _, client = api
    log: list[Request] = []
    api_client = recording(await client(), log)
    nodes = ApiClientNodeAPI(api_client)
    assert await nodes.get_node("n1") is not None
    await nodes.list_pods_on_node("n1")

    async def on_nodes(event: NodeEvent) -> None:
        pass

    node_watch = node_informer(api_client, on_nodes, watch_timeout=1)
    node_watch.start()
    try:
        await eventually(
            lambda: any(r.resource == "nodes" for r in log if r.verb == "watch"), "node watch"
        )
    finally:
        await node_watch.stop()
    kube = ApiClientResources(api_client)
    with contextlib.suppress(controlplane_client.StreamError):
        await controlplane_client.discover_endpoint(kube)
    with contextlib.suppress(controlplane_client.StreamError):
        await controlplane_client.fetch_ca(kube)
    # The HTTPS /metrics endpoint: TokenReview, then SubjectAccessReview.
    await TokenAuthenticator(kube).authenticate("some-token")
    with contextlib.suppress(KubeError):  # the embedded server may not answer SARs
        await AccessReviewer(kube).allowed(Identity("system:serviceaccount:m:p"), "get", "/metrics")
    # AntreaProxy: list + watch Services and EndpointSlices.
    from antrea.agent.proxy.watch import ENDPOINTSLICES, SERVICES, list_watch

    watches = [
        asyncio.get_running_loop().create_task(
            list_watch(api_client, path, lambda kind, obj: None, watch_timeout=1)
        )
        for path in (SERVICES, ENDPOINTSLICES)
    ]
    try:
        await eventually(
            lambda: (
                {r.resource for r in log if r.verb == "watch"} >= {"services", "endpointslices"}
            ),
            "proxy watches",
        )
    finally:
        for t in watches:
            t.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    check("antrea-agent", log)
