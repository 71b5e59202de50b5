"""Authorization in the embedded API server: RBAC from deploy/antrea.yml, the Node authorizer,
escalation checks and access reviews, driven over HTTPS with each identity's token."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from antrea.testbed.apiserver.server import APIServer
from antrea.testbed.lab import identities

JSON = dict[str, Any]
AGENT = identities.serviceaccount_user("antrea-agent")
CONTROLLER = identities.serviceaccount_user("antrea-controller")
SECRETS = "/api/v1/namespaces/kube-system/secrets"
NETPOLS = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
ENDPOINTS = "/api/v1/namespaces/kube-system/endpoints"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
CRBS = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
ROLES = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles"
ROLEBINDINGS = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings"


class As:
    """Requests with one identity's bearer token."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
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
        data = None if body is None else orjson.dumps(body)
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = ctype
        async with self.session.request(method, path, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw.startswith(b"{") else {}


class Cluster:
    def __init__(self, server: APIServer) -> None:
        self.server = server
        self.sessions: list[aiohttp.ClientSession] = []

    def client(self, token: str) -> As:
        ctx = ssl.create_default_context(cadata=self.server.ca_pem.decode())
        session = aiohttp.ClientSession(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(ssl=ctx),
        )
        self.sessions.append(session)
        return As(session)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Cluster, dict[str, As]]]:
    server = APIServer(port=0)
    await server.start()
    server.ensure_objects(identities.manifest_identity_objects())
    sa_groups = identities.serviceaccount_groups()
    extra = {identities.NODE_NAME_EXTRA: ["n1"]}
    server.add_token("agent", user=AGENT, groups=sa_groups, extra=extra)
    server.add_token("controller", user=CONTROLLER, groups=sa_groups, extra=extra)
    server.add_token("node1", user="system:node:n1", groups=["system:nodes"])
    server.add_token("dev", user="dev", groups=["developers"])
    c = Cluster(server)
    clients = {
        name: c.client(token)
        for name, token in (
            ("admin", server.admin_token),
            ("agent", "agent"),
            ("controller", "controller"),
            ("node1", "node1"),
            ("dev", "dev"),
        )
    }
    try:
        yield c, clients
    finally:
        for s in c.sessions:
            await s.close()
        await server.stop()


def secret(name: str, ns: str = "kube-system") -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {"k": "dmFsdWU="},
    }


def netpol(name: str) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"podSelector": {}},
    }


def endpoints() -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "antrea", "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 10349}]}],
    }


def lease(name: str, ns: str = "kube-system") -> JSON:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 15},
    }


def crb(name: str, role: str, user: str) -> JSON:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def assert_forbidden(status: int, body: JSON, user: str, verb: str, what: str) -> None:
    """403 with kube-apiserver's Status: reason Forbidden, details, the standard message."""
    assert status == 403, body
    assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
    assert f'User "{user}" cannot {verb} resource "{what}"' in body["message"], body["message"]


async def test_agent_is_refused_every_secret_in_kube_system(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    _, c = cluster
    status, _ = await c["controller"].req("POST", SECRETS, secret("antrea-controller-ca"))
    assert status == 201
    assert (await c["admin"].req("POST", SECRETS, secret("other")))[0] == 201
    for name in ("antrea-controller-ca", "other", "missing"):
        status, body = await c["agent"].req("GET", f"{SECRETS}/{name}")
        assert_forbidden(status, body, AGENT, "get", "secrets")
        assert body["message"] == (
            f'secrets "{name}" is forbidden: User "{AGENT}" cannot get resource "secrets" in '
            'API group "" in the namespace "kube-system"'
        )
        assert body["details"] == {"name": name, "kind": "secrets"}
        status, body = await c["agent"].req("PUT", f"{SECRETS}/{name}", secret(name))
        assert_forbidden(status, body, AGENT, "update", "secrets")
        status, body = await c["agent"].req("DELETE", f"{SECRETS}/{name}")
        assert_forbidden(status, body, AGENT, "delete", "secrets")
    for path, verb in ((SECRETS, "list"), (SECRETS + "?watch=1", "watch")):
        status, body = await c["agent"].req("GET", path)
        assert_forbidden(status, body, AGENT, verb, "secrets")
    status, body = await c["agent"].req("POST", SECRETS, secret("mine"))
    assert_forbidden(status, body, AGENT, "create", "secrets")
    status, body = await c["agent"].req("GET", "/api/v1/secrets")
    assert_forbidden(status, body, AGENT, "list", "secrets")
    assert body["message"].endswith("at the cluster scope")


async def test_agent_is_refused_policy_endpoint_lease_and_binding_writes(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    _, c = cluster
    agent, admin = c["agent"], c["admin"]
    assert (await admin.req("POST", NETPOLS, netpol("p")))[0] == 201
    assert (await admin.req("POST", ENDPOINTS, endpoints()))[0] == 201
    assert (await admin.req("POST", LEASES, lease("antrea-controller")))[0] == 201
    denied: list[tuple[str, str, Any, str, str]] = [
        ("POST", NETPOLS, netpol("q"), "create", "networkpolicies"),
        ("PUT", f"{NETPOLS}/p", netpol("p"), "update", "networkpolicies"),
        ("DELETE", f"{NETPOLS}/p", None, "delete", "networkpolicies"),
        ("DELETE", NETPOLS, None, "deletecollection", "networkpolicies"),
        ("POST", ENDPOINTS, endpoints(), "create", "endpoints"),
        ("PUT", f"{ENDPOINTS}/antrea", endpoints(), "update", "endpoints"),
        ("DELETE", f"{ENDPOINTS}/antrea", None, "delete", "endpoints"),
        ("POST", LEASES, lease("antrea-controller"), "create", "leases"),
        ("PUT", f"{LEASES}/antrea-controller", lease("antrea-controller"), "update", "leases"),
        ("DELETE", f"{LEASES}/antrea-controller", None, "delete", "leases"),
        ("POST", CRBS, crb("takeover", "cluster-admin", AGENT), "create", "clusterrolebindings"),
        ("DELETE", f"{CRBS}/antrea-agent", None, "delete", "clusterrolebindings"),
    ]
    for method, path, body, verb, resource in denied:
        status, out = await agent.req(method, path, body)
        assert_forbidden(status, out, AGENT, verb, resource)
    for path, patch in (
        (f"{NETPOLS}/p", {"spec": {"policyTypes": ["Ingress"]}}),
        (f"{ENDPOINTS}/antrea", {"subsets": []}),
        (f"{LEASES}/antrea-controller", {"spec": {"holderIdentity": "evil"}}),
    ):
        status, out = await agent.req("PATCH", path, patch, ctype="application/merge-patch+json")
        assert status == 403, out
    # What the agent needs still works (the manifest's antrea-agent ClusterRole).
    assert (await agent.req("GET", f"{ENDPOINTS}/antrea"))[0] == 200
    assert (await agent.req("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1"))[0] == 200
    assert (await agent.req("GET", "/api/v1/nodes"))[0] == 200
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "antrea-ca"}}
    assert (await admin.req("POST", "/api/v1/namespaces/kube-system/configmaps", cm))[0] == 201
    assert (await agent.req("GET", "/api/v1/namespaces/kube-system/configmaps/antrea-ca"))[0] == 200
    status, _ = await agent.req(
        "GET", "/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3Dantrea-ca"
    )
    assert status == 403  # the agent's Role grants only get on antrea-ca (what its code does)
    assert (await agent.req("GET", "/api/v1/namespaces/kube-system/configmaps"))[0] == 403
    # Discovery and version are open to every authenticated identity (system:discovery).
    for path in ("/version", "/api", "/apis", "/api/v1"):
        assert (await agent.req("GET", path))[0] == 200, path


async def test_controller_can_do_its_job_and_only_read_its_own_secret(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    _, c = cluster
    ctl = c["controller"]
    assert (await ctl.req("POST", SECRETS, secret("antrea-controller-ca")))[0] == 201
    assert (await ctl.req("GET", f"{SECRETS}/antrea-controller-ca"))[0] == 200
    assert (await ctl.req("POST", ENDPOINTS, endpoints()))[0] == 201
    assert (await ctl.req("PUT", f"{ENDPOINTS}/antrea", endpoints()))[0] == 200
    assert (await ctl.req("POST", LEASES, lease("antrea-controller")))[0] == 201
    assert (await ctl.req("GET", f"{LEASES}/antrea-controller"))[0] == 200
    for path in ("/api/v1/pods", "/api/v1/namespaces", NETPOLS):
        assert (await ctl.req("GET", path))[0] == 200, path
    # Nodes: only its own Node's address (get), as tests/unit/deploy/test_rbac_grants.py records.
    assert (await ctl.req("GET", "/api/v1/nodes/n1"))[0] in (200, 404)
    assert (await ctl.req("GET", "/api/v1/nodes"))[0] == 403
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
    status, out = await ctl.req(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {**review, "spec": {"token": "agent"}},
    )
    assert status == 201 and out["status"]["user"]["username"] == AGENT
    assert out["status"]["user"]["extra"] == {identities.NODE_NAME_EXTRA: ["n1"]}
    # Other Secrets stay out of reach (resourceNames), and so do policy writes.
    assert (await c["admin"].req("POST", SECRETS, secret("other")))[0] == 201
    status, body = await ctl.req("GET", f"{SECRETS}/other")
    assert_forbidden(status, body, CONTROLLER, "get", "secrets")
    assert (await ctl.req("GET", SECRETS))[0] == 403
    assert (await ctl.req("POST", NETPOLS, netpol("x")))[0] == 403


async def test_node_identity_is_confined_to_its_pods_and_its_own_objects(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    _, c = cluster
    admin, node = c["admin"], c["node1"]
    user = "system:node:n1"
    for name in ("n1", "n2"):
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        assert (await admin.req("POST", "/api/v1/nodes", body))[0] == 201
    for s in ("mounted", "unrelated"):
        assert (
            await admin.req("POST", "/api/v1/namespaces/default/secrets", secret(s, "default"))
        )[0] == 201
    for pod_name, node_name, secret_name in (("a", "n1", "mounted"), ("b", "n2", "unrelated")):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": "default"},
            "spec": {
                "nodeName": node_name,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "v", "secret": {"secretName": secret_name}}],
            },
        }
        assert (await admin.req("POST", "/api/v1/namespaces/default/pods", pod))[0] == 201
    assert (await node.req("GET", "/api/v1/namespaces/default/secrets/mounted"))[0] == 200
    status, body = await node.req("GET", "/api/v1/namespaces/default/secrets/unrelated")
    assert_forbidden(status, body, user, "get", "secrets")
    assert "no relationship found between node 'n1' and this object" in body["message"]
    assert (await node.req("GET", "/api/v1/namespaces/default/secrets"))[0] == 403
    assert (await node.req("GET", f"{SECRETS}/antrea-controller-ca"))[0] == 403
    merge = "application/merge-patch+json"
    status_patch = {"status": {"phase": "Running"}}
    ok = await node.req(
        "PATCH", "/api/v1/namespaces/default/pods/a/status", status_patch, ctype=merge
    )
    assert ok[0] == 200
    status, body = await node.req(
        "PATCH", "/api/v1/namespaces/default/pods/b/status", status_patch, ctype=merge
    )
    assert_forbidden(status, body, user, "patch", "pods/status")
    node_patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert (await node.req("PATCH", "/api/v1/nodes/n1/status", node_patch, ctype=merge))[0] == 200
    status, body = await node.req("PATCH", "/api/v1/nodes/n2/status", node_patch, ctype=merge)
    assert_forbidden(status, body, user, "patch", "nodes/status")
    status, body = await node.req(
        "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"}}
    )
    assert status == 403 and body["reason"] == "Forbidden"
    node_leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    assert (await node.req("POST", node_leases, lease("n1", "kube-node-lease")))[0] == 201
    assert (await node.req("POST", node_leases, lease("n2", "kube-node-lease")))[0] == 403
    assert (await node.req("POST", LEASES, lease("antrea-controller")))[0] == 403
    assert (await node.req("POST", ENDPOINTS, endpoints()))[0] == 403
    assert (await node.req("POST", NETPOLS, netpol("x")))[0] == 403
    status, _ = await node.req("POST", CRBS, crb("x", "cluster-admin", user))
    assert status == 403


async def test_escalation_needs_the_permissions_or_escalate_and_bind(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    _, c = cluster
    admin, dev = c["admin"], c["dev"]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    assert (await admin.req("POST", "/api/v1/namespaces", ns))[0] == 201

    def role(name: str, rules: list[JSON]) -> JSON:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": "team"},
            "rules": rules,
        }

    def binding(name: str, kind: str, role_name: str, user: str = "dev") -> JSON:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }

    manager = role(
        "manager",
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles", "rolebindings"],
                # not "*": that includes escalate and bind
                "verbs": ["create", "get", "list", "update", "delete"],
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        ],
    )
    assert (await admin.req("POST", ROLES, manager))[0] == 201
    assert (await admin.req("POST", ROLEBINDINGS, binding("dev-manager", "Role", "manager")))[
        0
    ] == 201
    # dev holds get/list pods: may grant that, not delete or secrets.
    assert (
        await dev.req(
            "POST",
            ROLES,
            role("reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        )
    )[0] == 201
    status, body = await dev.req(
        "POST",
        ROLES,
        role(
            "deleter", [{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["delete"]}]
        ),
    )
    assert status == 403 and body["reason"] == "Forbidden"
    assert "is attempting to grant RBAC permissions not currently held" in body["message"]
    assert '{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}' in body["message"]
    assert (await dev.req("GET", f"{ROLES}/deleter"))[0] == 404  # nothing stored
    # Binding: a role whose rules dev holds is fine; cluster-admin is not.
    assert (await dev.req("POST", ROLEBINDINGS, binding("r", "Role", "reader", "friend")))[0] == 201
    status, body = await dev.req("POST", ROLEBINDINGS, binding("x", "ClusterRole", "cluster-admin"))
    assert status == 403 and "not currently held" in body["message"]
    # With `bind` on cluster-admin (and `escalate` on roles) the checks are passed.
    grant = role(
        "granter",
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "verbs": ["bind"],
                "resourceNames": ["edit"],
            },
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles"],
                "verbs": ["escalate"],
            },
        ],
    )
    assert (await admin.req("POST", ROLES, grant))[0] == 201
    assert (await admin.req("POST", ROLEBINDINGS, binding("dev-granter", "Role", "granter")))[
        0
    ] == 201
    assert (await dev.req("POST", ROLEBINDINGS, binding("e", "ClusterRole", "edit", "friend")))[
        0
    ] == 201
    assert (await dev.req("POST", ROLEBINDINGS, binding("y", "ClusterRole", "admin", "friend")))[
        0
    ] == 403
    big = role("big", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    assert (await dev.req("POST", ROLES, big))[0] == 201
    # roleRef is immutable.
    status, body = await admin.req(
        "PUT", f"{ROLEBINDINGS}/r", binding("r", "Role", "big", "friend")
    )
    assert status == 422, body


async def test_access_reviews_answer_from_rbac(cluster: tuple[Cluster, dict[str, As]]) -> None:
    _, c = cluster
    sar: dict[str, Any] = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": AGENT,
            "groups": [*identities.serviceaccount_groups(), "system:authenticated"],
            "resourceAttributes": {
                "verb": "get",
                "resource": "secrets",
                "namespace": "kube-system",
                "name": "antrea-controller-ca",
            },
        },
    }
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    # The agent asks (its HTTPS /metrics authorizes callers with SubjectAccessReviews).
    status, out = await c["agent"].req("POST", path, sar)
    assert status == 201 and out["status"]["allowed"] is False
    sar["spec"]["user"] = CONTROLLER
    status, out = await c["agent"].req("POST", path, sar)
    assert out["status"]["allowed"] is True
    assert 'RoleBinding "kube-system/antrea-controller"' in out["status"]["reason"]
    # The controller asks too: it authorizes antctl users who are not system:masters.
    assert (await c["controller"].req("POST", path, sar))[0] == 201
    status, out = await c["agent"].req("POST", path, {"spec": {"user": "x"}})
    assert status == 422
    local = "/apis/authorization.k8s.io/v1/namespaces/kube-system/localsubjectaccessreviews"
    local_sar: dict[str, Any] = {
        "spec": {
            "user": CONTROLLER,
            "groups": identities.serviceaccount_groups(),
            "resourceAttributes": {
                "verb": "get",
                "resource": "secrets",
                "namespace": "kube-system",
                "name": "other",
            },
        }
    }
    status, out = await c["admin"].req("POST", local, local_sar)
    assert status == 201 and out["status"]["allowed"] is False
    local_sar["spec"]["resourceAttributes"]["namespace"] = "default"
    assert (await c["admin"].req("POST", local, local_sar))[0] == 422
    self_path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    ssar = {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}
    assert (await c["agent"].req("POST", self_path, ssar))[1]["status"]["allowed"] is True
    ssar = {"spec": {"nonResourceAttributes": {"verb": "get", "path": "/version"}}}
    assert (await c["agent"].req("POST", self_path, ssar))[1]["status"]["allowed"] is True
    ssar = {
        "spec": {
            "resourceAttributes": {
                "verb": "create",
                "resource": "clusterrolebindings",
                "group": "rbac.authorization.k8s.io",
            }
        }
    }
    assert (await c["agent"].req("POST", self_path, ssar))[1]["status"]["allowed"] is False
    rules_path = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    status, out = await c["agent"].req("POST", rules_path, {"spec": {"namespace": "kube-system"}})
    assert status == 201
    assert {
        "verbs": ["get"],
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["antrea-ca"],
    } in out["status"]["resourceRules"]


async def test_default_roles_are_bootstrapped_and_restored(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    server, c = cluster
    admin = c["admin"]
    crs = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    for name in (
        "cluster-admin",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node",
        "view",
        "edit",
        "admin",
    ):
        status, obj = await admin.req("GET", f"{crs}/{name}")
        assert status == 200, name
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    status, obj = await admin.req("GET", f"{CRBS}/cluster-admin")
    assert obj["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}
    ]
    # The view role aggregates: a user bound to it reads pods but not secrets.
    assert (await admin.req("POST", CRBS, crb("dev-view", "view", "dev")))[0] == 201
    assert (await c["dev"].req("GET", "/api/v1/pods"))[0] == 200
    assert (await c["dev"].req("GET", "/api/v1/secrets"))[0] == 403
    assert (await c["dev"].req("POST", NETPOLS, netpol("x")))[0] == 403
    # Reset on start, like kube-apiserver's reconciliation of autoupdate roles.
    assert (await admin.req("DELETE", f"{CRBS}/system:discovery"))[0] == 200
    status, body = await c["dev"].req("GET", "/apis")
    assert status == 403 and body["message"] == 'forbidden: User "dev" cannot get path "/apis"'
    assert (await c["dev"].req("GET", "/version"))[0] == 200  # system:public-info-viewer
    server.server.ensure_objects(server.server.authorization.default_objects())
    assert (await c["dev"].req("GET", "/apis"))[0] == 200


async def test_impersonation_needs_the_impersonate_verb(
    cluster: tuple[Cluster, dict[str, As]],
) -> None:
    """``kubectl --as``: the admin may act as the agent (and is then refused like it); nobody
    without ``impersonate`` may."""
    _, c = cluster
    as_agent = {"Impersonate-User": AGENT}
    status, body = await c["admin"].req("GET", f"{SECRETS}/x", headers=as_agent)
    assert_forbidden(status, body, AGENT, "get", "secrets")
    status, body = await c["admin"].req("GET", "/api/v1/pods", headers=as_agent)
    assert status == 200  # the agent's role via its ServiceAccount groups and binding
    status, body = await c["dev"].req("GET", "/api/v1/pods", headers=as_agent)
    assert_forbidden(status, body, "dev", "impersonate", "serviceaccounts")
    as_master = {"Impersonate-User": "dev", "Impersonate-Group": "system:masters"}
    status, body = await c["agent"].req("GET", "/api/v1/secrets", headers=as_master)
    assert_forbidden(status, body, AGENT, "impersonate", "users")
    status, _ = await c["admin"].req(
        "GET", "/api/v1/pods", headers={"Impersonate-Group": "system:masters"}
    )
    assert status == 400
