"""Service address allocation and the ``default/kubernetes`` Service of the embedded server."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.server import APIServer
from antrea.testbed.apiserver.services import ServiceNetwork, allocate, used_addresses

JSON = dict[str, Any]
SVCS = "/api/v1/namespaces/default/services"


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def req(self, method: str, path: str, body: Any = None) -> tuple[int, JSON]:
        data = None if body is None else orjson.dumps(body)
        hdrs = {"Content-Type": "application/json"}
        async with self.session.request(method, path, data=data, headers=hdrs) as resp:
            return resp.status, orjson.loads(await resp.read())


def svc(name: str, **spec: Any) -> JSON:
    return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}


@pytest.mark.parametrize(
    ("cidr", "ports"),
    [("10.96.0.0/33", "30000-32767"), ("10.96.0.1/16", "30000-32767"), ("10.96.0.0/30", "1-2"),
     ("10.96.0.0/16", "32767-30000"), ("10.96.0.0/16", "x"), ("fd00::/64", "30000-30001")],
)  # fmt: skip
def test_bad_service_network_is_refused(cidr: str, ports: str) -> None:
    with pytest.raises(ValueError):
        ServiceNetwork.parse(cidr, ports)


def test_allocation_from_a_small_range_until_exhausted() -> None:
    net = ServiceNetwork.parse("10.100.0.0/28", "30000-30001")
    used: set[str] = set()
    got = []
    for i in range(6):  # .1 and .10-.14 (.2-.9 are kept for static assignment)
        obj = svc(f"s{i}")
        allocate(obj, net, used, set())
        used.add(obj["spec"]["clusterIP"])
        got.append(obj["spec"]["clusterIP"])
    assert got == ["10.100.0.1", *(f"10.100.0.{n}" for n in range(10, 15))]
    with pytest.raises(errors.APIError):
        allocate(svc("full"), net, used, set())
    static = svc("static", clusterIP="10.100.0.5")
    allocate(static, net, used, set())
    assert static["spec"]["clusterIPs"] == ["10.100.0.5"]


def test_node_ports_allocated_kept_and_checked() -> None:
    net = ServiceNetwork.parse("10.96.0.0/16", "30000-30002")
    a = svc("a", type="NodePort", ports=[{"port": 80, "protocol": "TCP"}])
    allocate(a, net, set(), set())
    assert a["spec"]["ports"][0]["nodePort"] == 30000
    ips, ports = used_addresses([a])
    b = svc("b", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30000}])
    with pytest.raises(errors.APIError, match="already allocated"):
        allocate(b, net, ips, ports)
    c = svc("c", type="NodePort", ports=[{"port": 80, "protocol": "UDP", "nodePort": 30000}])
    allocate(c, net, ips, ports)  # another protocol: free
    d = svc("d", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 31000}])
    with pytest.raises(errors.APIError, match="valid range"):
        allocate(d, net, ips, ports)
    # an update without nodePort keeps the old one; a move to ClusterIP drops it
    upd = svc("a", type="NodePort", ports=[{"port": 80, "protocol": "TCP"}])
    allocate(upd, net, ips, ports, old=a)
    assert upd["spec"]["ports"][0]["nodePort"] == 30000
    assert upd["spec"]["clusterIP"] == a["spec"]["clusterIP"]
    back = svc("a", type="ClusterIP", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30000}])
    allocate(back, net, ips, ports, old=a)
    assert "nodePort" not in back["spec"]["ports"][0]


@pytest.fixture
async def api() -> AsyncIterator[Client]:
    server = APIServer(port=0, service_cidr="10.112.0.0/24", advertise_address=("192.0.2.1", 6443))
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        connector=aiohttp.TCPConnector(ssl=ctx),
    )
    try:
        yield Client(session)
    finally:
        await session.close()
        await server.stop()


async def test_kubernetes_service_points_at_the_server(api: Client) -> None:
    status, k = await api.req("GET", SVCS + "/kubernetes")
    assert status == 200
    assert k["spec"]["clusterIP"] == "10.112.0.1"
    assert k["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
    ]
    _, s = await api.req(
        "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
    )
    assert s["endpoints"][0]["addresses"] == ["192.0.2.1"]
    assert s["ports"][0]["port"] == 6443
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"


async def test_cluster_ips_come_from_the_configured_range(api: Client) -> None:
    _, a = await api.req("POST", SVCS, svc("a"))
    assert a["spec"]["clusterIP"] == "10.112.0.10"
    status, dup = await api.req("POST", SVCS, svc("b", clusterIP="10.112.0.10"))
    assert status == 422 and "already allocated" in dup["message"]
    status, out = await api.req("POST", SVCS, svc("c", clusterIP="10.96.0.50"))
    assert status == 422 and "valid range" in out["message"]
    _, h = await api.req("POST", SVCS, svc("h", clusterIP="None"))
    assert h["spec"]["clusterIPs"] == ["None"]
    _, np = await api.req("POST", SVCS, svc("np", type="NodePort"))
    node_port = np["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    # a PUT without clusterIP keeps it (and the NodePort)
    np["spec"].pop("clusterIP")
    np["spec"].pop("clusterIPs")
    np["spec"]["ports"][0].pop("nodePort")
    status, put = await api.req("PUT", SVCS + "/np", np)
    assert status == 200, put
    assert put["spec"]["clusterIP"] == "10.112.0.11"
    assert put["spec"]["ports"][0]["nodePort"] == node_port
