"""AntreaProxy at scale: Services x endpoints realized in real OVS vs the raw bundle floor.

Usage (root): ``python benchmarks/proxy_scale.py [--services 10000] [--endpoints 10]
[--changes 200]``

1. Realization: ``--services`` ClusterIP Services (TCP, one port, no affinity), each with an
   EndpointSlice of ``--endpoints`` ready endpoints (distinct pod IPs on 40 nodes' pod CIDRs),
   handed to the agent's `Proxier` as watch events (the objects are built outside the clock).
   Clock: from the first event to every Service realized (groups set, endpoint DNAT and service
   flows installed) in a private userspace OVS bridge through the agent's native OpenFlow
   transport. Flows and groups are counted on the bridge afterwards (``dump-aggregate``,
   ``dump-groups``). RSS: this process (the proxier and its caches) before and after.
   The floor: the very same flows and groups (taken from the proxier, outside the clock) set on
   a fresh bridge in ONE native bundle. ``ratio`` = ours / floor.
2. Endpoint change, from the API: an embedded API server (`antrea.testbed.apiserver`, in this
   process) holds the EndpointSlices of the Services to be changed, and the proxier watches
   EndpointSlices through it with the agent's own list-watch (`antrea.agent.proxy.watch`) and
   sync loop (`Proxier.run`), on top of the 10,000 Services realized in step 1. ``--changes``
   times, one Service's slice loses one endpoint and gains another (a new pod IP). Clock: from
   just before the EndpointSlice ``PUT`` is sent to the API server to the switch acknowledging
   the bundle that modifies that Service's group (the proxier's transport is wrapped to note
   it). So the API write, the watch delivery, the proxier's parse and diff and the OpenFlow
   round trip are all in it. Median and p99.

The last line is one JSON object: ``services``, ``endpoints_per_service``, ``seconds``,
``floor_seconds``, ``ratio``, ``flows``, ``groups``, ``rss_mib`` (growth), ``change_median_ms``,
``change_p99_ms``, ``changes``, ``change_clock`` (``"api_write_to_group_modified"``), and
``change_from_event_median_ms`` / ``change_from_event_p99_ms``: the same changes from the watch
event reaching the proxier (the part of the clock after the API server and the watch).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import resource
import ssl
import statistics
import subprocess
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from project_env import use_project_venv

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def service(i: int) -> dict[str, Any]:
    ip = ipaddress.IPv4Address("10.96.0.0") + 10 + i
    return {
        "metadata": {"namespace": "bench", "name": f"s{i}"},
        "spec": {"clusterIP": str(ip), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


def endpoint_ip(n: int) -> str:
    node, host = divmod(n, 250)
    return f"10.{244 + node // 256}.{node % 256}.{host + 2}"


def eps_slice(i: int, ips: list[str]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "bench",
            "name": f"s{i}-x",
            "labels": {"kubernetes.io/service-name": f"s{i}"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True}, "nodeName": f"n{k % 40}"}
            for k, ip in enumerate(ips)
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def p99(sorted_ms: list[float]) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * 0.99))]


def count(ovs: Any, bridge: str) -> tuple[int, int]:
    agg = ovs.run(["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", ovs.ofctl_target(bridge)])
    flows = int(agg.stdout.split("flow_count=")[1].split()[0])
    groups = ovs.run(["ovs-ofctl", "-O", "OpenFlow15", "dump-groups", ovs.ofctl_target(bridge)])
    return flows, sum(1 for line in groups.stdout.splitlines() if "group_id=" in line)


async def run(args: argparse.Namespace, ovs: Any) -> dict[str, Any]:
    from antrea.agent.proxy.proxier import Proxier
    from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
    from antrea.ovs.openflow.cookie import make_cookie
    from antrea.ovs.openflow.native import OpenFlowTransport

    for br in ("br-int", "br-floor"):
        ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        ovs.run(["ovs-ofctl", "del-flows", ovs.ofctl_target(br)])
    transport = OpenFlowTransport(ovs.ofctl_target("br-int"))
    floor_t = OpenFlowTransport(ovs.ofctl_target("br-floor"))
    try:
        proxier = Proxier(
            writer=CoalescingWriter(FlowClient(transport)),
            transport=transport,
            cookie=partial(make_cookie, 1),
            node_name="n0",
        )
        n, k = args.services, args.endpoints
        svcs = [service(i) for i in range(n)]
        slices = [eps_slice(i, [endpoint_ip(i * k + j) for j in range(k)]) for i in range(n)]
        rss0 = rss_mib()
        start = time.perf_counter()
        for s in svcs:
            proxier.on_service("ADDED", s)
        for s in slices:
            proxier.on_slice("ADDED", s)
        await proxier.sync_dirty()
        seconds = time.perf_counter() - start
        rss1 = rss_mib()
        flows, groups = count(ovs, "br-int")

        all_flows = proxier.writer.client.installed()
        all_groups = proxier.groups()
        start = time.perf_counter()
        await floor_t.bundle(add=all_flows, set_groups=all_groups)
        floor = time.perf_counter() - start
        floor_flows, floor_groups = count(ovs, "br-floor")
        assert (floor_flows, floor_groups) == (flows, groups), (floor_flows, floor_groups)

        lat, from_event = await api_changes(args, proxier, transport, slices)
        return {
            "services": n,
            "endpoints_per_service": k,
            "seconds": round(seconds, 3),
            "floor_seconds": round(floor, 3),
            "ratio": round(seconds / floor, 2),
            "flows": flows,
            "groups": groups,
            "rss_mib": round(rss1 - rss0, 1),
            "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "changes": len(lat),
            "change_median_ms": round(statistics.median(lat), 3),
            "change_p99_ms": round(p99(lat), 3),
            "change_clock": "api_write_to_group_modified",
            "change_from_event_median_ms": round(statistics.median(from_event), 3),
            "change_from_event_p99_ms": round(p99(from_event), 3),
        }
    finally:
        await transport.close()
        await floor_t.close()


SLICES = "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices"


async def api_changes(
    args: argparse.Namespace, proxier: Any, transport: Any, slices: list[dict[str, Any]]
) -> tuple[list[float], list[float]]:
    """Endpoint changes written to an API server the proxier watches; latencies in ms from
    the write to the bundle modifying the Service's group acknowledged by the switch, and
    (the same changes) from the watch event reaching the proxier to that acknowledgement."""
    import aiohttp

    from antrea.agent.proxy.watch import ENDPOINTSLICES, list_watch
    from antrea.k8s.client import load_kubeconfig_client
    from antrea.testbed.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
    from antrea.testbed.apiserver.server import APIServer

    n, k = args.services, args.endpoints
    targets = sorted({(c * 7919) % n for c in range(args.changes)})
    gid = {
        int(i.port.name[1:]): i.group_id
        for i in proxier.installed.values()
        if i.port.namespace == "bench"
    }
    # the group a change waits for, and the event set when a bundle modifying it is acked
    waiting: dict[int, asyncio.Event] = {}
    bundle = transport.bundle

    async def noted(*a: Any, **kw: Any) -> Any:
        out = await bundle(*a, **kw)
        for g in kw.get("set_groups") or ():
            ev = waiting.get(g.group_id)
            if ev is not None:
                ev.set()
        return out

    transport.bundle = noted
    server = APIServer(port=0)
    await server.start()
    tasks: list[asyncio.Task[Any]] = []
    api_client: Any = None
    try:
        ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
        async with aiohttp.ClientSession(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.admin_token}"},
            connector=aiohttp.TCPConnector(ssl=ctx),
        ) as http:
            ns = {"metadata": {"name": "bench"}}
            async with http.post("/api/v1/namespaces", json=ns) as resp:
                assert resp.status == 201, await resp.text()
            stored: dict[int, dict[str, Any]] = {}
            for i in targets:
                async with http.post(SLICES, json=slices[i]) as resp:
                    assert resp.status == 201, await resp.text()
                    stored[i] = await resp.json()
            with tempfile.TemporaryDirectory(prefix="pxbench-kc-") as tmp:
                kc = Path(tmp) / "kubeconfig"
                text = render_kubeconfig(
                    server=server.url, ca_pem=server.ca_pem, token=server.admin_token
                )
                write_kubeconfig(kc, text)
                api_client = load_kubeconfig_client(str(kc))
            seen: list[float] = []  # when the watch event reached the proxier

            def on_slice(kind: str, obj: dict[str, Any]) -> None:
                if kind == "MODIFIED":
                    seen.append(time.perf_counter())
                proxier.on_slice(kind, obj)

            synced = asyncio.Event()
            tasks.append(asyncio.create_task(proxier.run()))
            tasks.append(
                asyncio.create_task(list_watch(api_client, ENDPOINTSLICES, on_slice, synced=synced))
            )
            await asyncio.wait_for(synced.wait(), 60)
            await asyncio.sleep(1.0)  # the listed (unchanged) slices' no-op sync
            lat: list[float] = []
            fresh = n * k
            proxier_side: list[float] = []
            for c in range(args.changes):
                i = (c * 7919) % n
                cur = [e["addresses"][0] for e in stored[i]["endpoints"]]
                body = eps_slice(i, [*cur[1:], endpoint_ip(fresh)])
                fresh += 1
                body["metadata"]["resourceVersion"] = stored[i]["metadata"]["resourceVersion"]
                ev = waiting[gid[i]] = asyncio.Event()
                t0 = time.perf_counter()
                async with http.put(f"{SLICES}/s{i}-x", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                    stored[i] = await resp.json()
                seen.clear()
                await asyncio.wait_for(ev.wait(), 30)
                t1 = time.perf_counter()
                lat.append((t1 - t0) * 1000)
                proxier_side.append((t1 - seen[0]) * 1000)
                del waiting[gid[i]]
            await asyncio.sleep(1.0)  # the last change's trailing bundle (old DNAT flow deleted)
            lat.sort()
            proxier_side.sort()
            return lat, proxier_side
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if api_client is not None:
            await api_client.close()
        await server.stop()
        transport.bundle = bundle


def main() -> None:
    use_project_venv()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    from antrea.testbed.ovssandbox import OvsSandbox

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--changes", type=int, default=200)
    args = p.parse_args()
    ns = f"pxbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with tempfile.TemporaryDirectory(prefix="pxbench-") as tmp:
            ovs = OvsSandbox(rundir=Path(tmp) / "ovs", netns=ns)
            try:
                ovs.start()
                doc = asyncio.run(run(args, ovs))
            finally:
                ovs.stop()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
