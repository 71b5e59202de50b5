"""AntreaProxy end to end: Services of 2- and 3-node labs (antrea CNI) answer from pods.

One module-scoped lab per variant (2 and 3 nodes, VXLAN encap and noEncap), each variant its own
xdist group so a parallel run gives each lab one worker; each test creates its own namespace and
deletes it. Traffic is real: TCP connects (the lab's pods answer with ``<ns>/<pod>``) and UDP
echoes from inside the client pods' network namespaces.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from antrea.ovs.ovsctl import parse_flow_line
from antrea.testbed.lab import netns, sandbox
from antrea.testbed.lab.state import AGENT_API_PORT
from antrea.testbed.lab.testing import Lab, LabParams, lab_session

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]
JSON = dict[str, Any]


def _variant(nodes: int, encap: str) -> Any:
    mode = "encap" if encap == "vxlan" else "noEncap"
    return pytest.param(
        LabParams(nodes=nodes, encap=encap),  # type: ignore[arg-type]
        id=f"{nodes}node-{mode}",
        marks=pytest.mark.xdist_group(f"svc-{nodes}node-{encap}"),
    )


VARIANTS = [_variant(n, e) for n in (2, 3) for e in ("vxlan", "none")]


@pytest.fixture(scope="module", params=VARIANTS)
def lab(request: pytest.FixtureRequest) -> Any:
    with lab_session(request.param) as handle:
        yield handle


def pod(name: str, ns: str, node: str, labels: dict[str, str], ports: list[JSON]) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "c", "image": "lab", "ports": ports}],
        },
    }


def service(name: str, ns: str, ports: list[JSON], **spec: Any) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": ports, **spec},
    }


async def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        await asyncio.sleep(0.2)


def _netns(lab: Lab, key: str) -> str:
    sb = sandbox.find(lab.spec, key)
    assert sb is not None, key
    return str(netns.netns_path(sb.netns))


def tcp_get(lab: Lab, client: str, ip: str, port: int, timeout: float = 2.0) -> str:
    """One TCP connect from the client pod: the answer line, or the error's name."""

    def go() -> str:
        try:
            with socket.create_connection((ip, port), timeout=timeout) as s:
                s.settimeout(timeout)
                return s.recv(200).decode().strip()
        except OSError as exc:
            return type(exc).__name__

    return netns.call_in(_netns(lab, client), go)


def tcp_connect(lab: Lab, client: str, ip: str, port: int) -> str:
    """ "connected", or the error's name (for servers that do not speak first, like TLS)."""

    def go() -> str:
        try:
            with socket.create_connection((ip, port), timeout=2.0):
                return "connected"
        except OSError as exc:
            return type(exc).__name__

    return netns.call_in(_netns(lab, client), go)


def tcp_many(lab: Lab, client: str, ip: str, port: int, n: int) -> Counter[str]:
    return Counter(tcp_get(lab, client, ip, port) for _ in range(n))


def udp_echo(lab: Lab, client: str, ip: str, port: int) -> str:
    def go() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            s.sendto(b"ping", (ip, port))
            try:
                return s.recv(100).decode()
            except OSError as exc:
                return type(exc).__name__

    return netns.call_in(_netns(lab, client), go)


class Env:
    def __init__(self, lab: Lab, ns: str, client: Any) -> None:
        self.lab = lab
        self.ns = ns
        self.c = client

    async def pods(self, *pods: JSON) -> None:
        for p in pods:
            await self.c.create(f"/api/v1/namespaces/{self.ns}/pods", p)

        async def ready() -> bool:
            items = (await self.c.list(f"/api/v1/namespaces/{self.ns}/pods"))["items"]
            names = {p["metadata"]["name"] for p in pods}
            ok = {
                i["metadata"]["name"]
                for i in items
                if i["status"].get("podIP")
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in i["status"].get("conditions") or []
                )
            }
            return names <= ok

        await wait_for(ready, 60, "pods ready")

    async def service(self, svc: JSON) -> str:
        out = await self.c.create(f"/api/v1/namespaces/{self.ns}/services", svc)
        return str(out["spec"]["clusterIP"])

    async def endpoints(self, name: str) -> int:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.ns}/endpointslices"
        items = (await self.c.list(path, labelSelector=f"kubernetes.io/service-name={name}"))[
            "items"
        ]
        return sum(
            1
            for s in items
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
        )

    async def delete_pod(self, name: str) -> None:
        await self.c.delete(f"/api/v1/namespaces/{self.ns}/pods/{name}", grace_seconds=0)


@pytest.fixture
async def env(lab: Lab, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    name = request.node.originalname.removeprefix("test_").replace("_", "-")
    ns = ("svc-" + name)[:50].rstrip("-")
    async with lab.client() as c:
        await c.create("/api/v1/namespaces", {"metadata": {"name": ns}})
        try:
            yield Env(lab, ns, c)
        finally:
            await c.delete(f"/api/v1/namespaces/{ns}")


HTTP = [{"name": "http", "containerPort": 8080}]


async def test_kubernetes_service_answers_from_pods(env: Env) -> None:
    svc = json.loads(env.lab.kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "json"))
    ip = svc["spec"]["clusterIP"]
    await env.pods(pod("a", env.ns, "node1", {"app": "none"}, HTTP))

    async def connects() -> bool:
        return tcp_connect(env.lab, f"{env.ns}/a", ip, 443) == "connected"

    await wait_for(connects, 30, "kubernetes Service reachable")


async def test_cluster_ip_spreads_over_backends_on_every_node(env: Env) -> None:
    """3 backends (on 3 different nodes in the 3-node lab), named targetPort: a client pod on
    every node reaches all 3 in 100 tries; scaling down drops the removed backend, down to none
    refuses at once, and back up works."""
    ns = env.ns
    nodes = env.lab.nodes
    third = nodes[2] if len(nodes) > 2 else "node2"
    backends = [
        pod("web-1", ns, "node1", {"app": "web"}, HTTP),
        pod("web-2", ns, "node2", {"app": "web"}, HTTP),
        # a named targetPort resolving to another number in this pod
        pod("web-3", ns, third, {"app": "web"}, [{"name": "http", "containerPort": 9090}]),
    ]
    client_names = [f"c{i + 1}" for i in range(len(nodes))]
    clients = [pod(c, ns, n, {}, []) for c, n in zip(client_names, nodes, strict=True)]
    await env.pods(*backends, *clients)
    ip = await env.service(service("web", ns, [{"port": 80, "targetPort": "http"}]))

    async def three() -> bool:
        return await env.endpoints("web") == 3

    await wait_for(three, 30, "3 endpoints")
    want = {f"{ns}/web-1", f"{ns}/web-2", f"{ns}/web-3"}
    # every pod on every node: the clients and the backends (which hairpin for their own turn)
    for client in [*client_names, "web-1", "web-2", "web-3"]:

        async def all_reached(client: str = client) -> bool:
            return set(tcp_many(env.lab, f"{ns}/{client}", ip, 80, 100)) == want

        await wait_for(all_reached, 20, f"all 3 backends from {client}")
    # `antrea lab probe --service`: the probe document with the Service as the one column
    doc = json.loads(env.lab.antrea("probe", "--service", f"{ns}/web", "-o", "json").stdout)
    assert doc["columns"] == [f"{ns}/web"] and doc["port"] == 80
    for client in client_names:
        assert doc["matrix"][f"{ns}/{client}"] == {f"{ns}/web": True}

    # `antctl get ovsflows -S`: the Service's flows (group, DNAT to each endpoint)
    out = env.lab.exec_node("node1", "antctl", "get", "ovsflows", "-S", f"{ns}/web", "-o", "json")
    text = out.stdout
    dumped = [f for f in (parse_flow_line(d["flow"]) for d in json.loads(text)) if f is not None]
    assert any(f.parsed.match.nw_dst == ipaddress.ip_address(ip) for f in dumped), text
    assert "group:" in text
    for port in ("8080", "9090"):
        assert f":{port})" in text  # nat(dst=<endpoint>:<port>)
    # antrea_proxy_* metrics, as upstream names them, on the agent's local API
    url = f"http://127.0.0.1:{AGENT_API_PORT}/metrics"
    metrics = env.lab.exec_node(
        "node1",
        "python3",
        "-c",
        f"import urllib.request as u; print(u.urlopen('{url}').read().decode())",
    ).stdout
    installed = [
        line for line in metrics.splitlines()
        if line.startswith("antrea_proxy_total_endpoints_installed ")
    ]  # fmt: skip
    assert installed and float(installed[0].split()[1]) >= 3
    assert "antrea_proxy_sync_proxy_rules_duration_seconds_count" in metrics

    # hairpin: a backend reaching itself through the Service (SNATed, answered over OVS)
    async def hairpin() -> bool:
        got = tcp_many(env.lab, f"{ns}/web-1", ip, 80, 30)
        return f"{ns}/web-1" in got and set(got) <= want

    await wait_for(hairpin, 20, "hairpin")
    web2 = (await env.c.get(f"/api/v1/namespaces/{ns}/pods/web-2"))["status"]["podIP"]

    def conntrack_to_web2() -> bool:  # node1's entries of c1's connections through the Service
        dump = env.lab.exec_node("node1", "ovs-appctl", "dpctl/dump-conntrack", "zone=65520").stdout
        return f"dst={ip}," in dump and f"reply=(src={web2}," in dump

    assert conntrack_to_web2()  # c1's (TIME_WAIT) connections through the Service to web-2
    await env.delete_pod("web-2")

    async def two() -> bool:
        got = tcp_many(env.lab, f"{ns}/c1", ip, 80, 30)
        return set(got) == {f"{ns}/web-1", f"{ns}/web-3"}

    await wait_for(two, 10, "removed backend no longer reached")

    async def ended() -> bool:  # the agent flushes them one by one after the group changed
        return not conntrack_to_web2()

    await wait_for(ended, 10, "connections to the removed endpoint ended")
    await env.delete_pod("web-1")
    await env.delete_pod("web-3")

    async def refused() -> bool:
        start = time.monotonic()
        answer = tcp_get(env.lab, f"{ns}/c1", ip, 80, timeout=5)
        return answer == "ConnectionRefusedError" and time.monotonic() - start < 1.0

    await wait_for(refused, 10, "no endpoints: refused at once")
    await env.pods(pod("web-4", ns, nodes[-1], {"app": "web"}, HTTP))

    async def back() -> bool:
        return tcp_get(env.lab, f"{ns}/c1", ip, 80) == f"{ns}/web-4"

    await wait_for(back, 10, "scaled up again")


async def test_udp_service_and_client_ip_affinity(env: Env) -> None:
    ns = env.ns
    udp = [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]
    await env.pods(
        pod("dns-1", ns, "node1", {"app": "dns"}, udp),
        pod("sticky-1", ns, "node1", {"app": "sticky"}, HTTP),
        pod("sticky-2", ns, "node2", {"app": "sticky"}, HTTP),
        pod("c", ns, "node1", {}, []),
    )
    dns = await env.service(
        service("dns", ns, [{"port": 53, "targetPort": "dns", "protocol": "UDP"}])
    )
    sticky = await env.service(
        service(
            "sticky",
            ns,
            [{"port": 80, "targetPort": 8080}],
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        )
    )

    async def echoes() -> bool:
        return udp_echo(env.lab, f"{ns}/c", dns, 53) == "ping"

    await wait_for(echoes, 20, "UDP Service echo")

    async def sticks() -> bool:
        got = tcp_many(env.lab, f"{ns}/c", sticky, 80, 30)
        return len(got) == 1 and next(iter(got)).startswith(f"{ns}/sticky-")

    await wait_for(sticks, 20, "ClientIP affinity")


async def test_policy_applies_to_service_traffic(env: Env) -> None:
    """A NetworkPolicy admitting only b to the backends blocks c through the Service."""
    ns = env.ns
    await env.pods(
        pod("api-1", ns, "node2", {"app": "api"}, HTTP),
        # a backend on the clients' node: DNAT and the ingress check in the same pipeline
        pod("api-2", ns, "node1", {"app": "api"}, HTTP),
        pod("b", ns, "node1", {"role": "b"}, []),
        pod("c", ns, "node1", {"role": "c"}, []),
    )
    ip = await env.service(service("api", ns, [{"port": 80, "targetPort": 8080}]))
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-b", "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": {"app": "api"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "b"}}}]}],
        },
    }

    backends = {f"{ns}/api-1", f"{ns}/api-2"}

    async def reachable() -> bool:
        return set(tcp_many(env.lab, f"{ns}/c", ip, 80, 20)) == backends

    await wait_for(reachable, 20, "Service reachable before the policy")
    await env.c.create(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", policy)

    async def isolated() -> bool:
        c_gets = {tcp_get(env.lab, f"{ns}/c", ip, 80, timeout=0.5) for _ in range(8)}
        b_gets = set(tcp_many(env.lab, f"{ns}/b", ip, 80, 20))
        return not (c_gets & backends) and b_gets == backends

    await wait_for(isolated, 20, "policy through the Service")


def ns_tcp_get(netns_name: str, ip: str, port: int) -> str:
    def go() -> str:
        try:
            with socket.create_connection((ip, port), timeout=2.0) as s:
                s.settimeout(2.0)
                return s.recv(200).decode().strip()
        except OSError as exc:
            return type(exc).__name__

    return netns.call_in(str(netns.netns_path(netns_name)), go)


async def test_node_port_cluster_and_local(env: Env) -> None:
    """NodePort answers on every node from the underlay and from every node (the backend's and
    the others); with externalTrafficPolicy Local only the node with the backend answers."""
    ns = env.ns
    spec = env.lab.spec
    nodes = [spec.node(n) for n in env.lab.nodes]
    backend_node = spec.node("node2")
    await env.pods(pod("np-1", ns, "node2", {"app": "np"}, HTTP))
    np_svc = await env.c.create(
        f"/api/v1/namespaces/{ns}/services",
        service("np", ns, [{"port": 80, "targetPort": 8080}], type="NodePort"),
    )
    local_body = service("np", ns, [{"port": 80, "targetPort": 8080}], type="NodePort")
    local_body["metadata"]["name"] = "np-local"
    local_body["spec"]["externalTrafficPolicy"] = "Local"
    local_svc = await env.c.create(f"/api/v1/namespaces/{ns}/services", local_body)
    port = np_svc["spec"]["ports"][0]["nodePort"]
    lport = local_svc["spec"]["ports"][0]["nodePort"]
    want = f"{ns}/np-1"
    sources = [spec.underlay_netns, *(n.netns for n in nodes)]

    async def cluster_everywhere() -> bool:
        return all(ns_tcp_get(src, n.underlay_ip, port) == want for src in sources for n in nodes)

    await wait_for(cluster_everywhere, 30, "NodePort (Cluster) from the underlay and every node")

    async def local_only_on_node2() -> bool:
        return ns_tcp_get(spec.underlay_netns, backend_node.underlay_ip, lport) == want and all(
            ns_tcp_get(spec.underlay_netns, n.underlay_ip, lport) != want
            for n in nodes
            if n is not backend_node
        )

    await wait_for(local_only_on_node2, 30, "NodePort (Local) only where the backend is")
