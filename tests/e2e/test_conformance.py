"""Kubernetes NetworkPolicy conformance in the lab: the upstream x/y/z x a/b/c model.

Every case of /work/shared/netpol-cases and tests/e2e/netpol/cases runs against ONE lab per
variant (policies and labels are reset between cases), probing real TCP/UDP between pods spread
over the nodes with the lab's probe (the diagonal is skipped as upstream does).

Variants:
- CI (default): 2 nodes, VXLAN encap, every case; 3 nodes Geneve and 2 nodes noEncap run a
  representative subset (`SUBSET`: deny-all, ports, named ports, ingress+egress, ipBlock except,
  egress named port, pod relabel, cross-namespace, egress ipBlocks).
- ``ANTREA_CONFORMANCE_FULL=1``: every case in all four variants (2/3 nodes x encap/noEncap).

Antrea-native cases (/work/shared/netpol-cases-antrea and tests/e2e/netpol/cases-antrea: Tiers,
ClusterNetworkPolicies, Antrea NetworkPolicies, groups; ids prefixed ``antrea-``) run in the
same labs: every one on the default 2-node VXLAN lab, `ANTREA_SUBSET` (Reject, Pass with Self,
tiers, baseline) on the other CI variants. Their matrices tell dropped (X) from rejected (R):
the probe's verdicts are compared, not just connected or not.

After each step the test waits until every node's agent reports the policies' current
generation realized (its local API, read from inside the node's namespace), then ~1 s for
group-only changes (relabels) that do not bump a generation.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from antrea.lab import netns
from antrea.lab.kube import ApiError, KubeClient
from antrea.lab.probe import lab_targets, probe_matrix
from antrea.lab.state import AGENT_API_PORT
from antrea.lab.testing import Lab, LabParams

sys.path.insert(0, str(Path(__file__).resolve().parent / "netpol"))
import caselib

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]

FULL = os.environ.get("ANTREA_CONFORMANCE_FULL") == "1"
CASES = caselib.all_cases() + caselib.antrea_cases()
ANTREA_SUBSET = {"antrea-011", "antrea-015", "antrea-022", "antrea-104", "antrea-105"}
SUBSET = {"002", "014", "017", "027", "035", "103", "108", "111", "113"} | ANTREA_SUBSET
NP_PATH = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
CRD = "/apis/crd.antrea.io/v1beta1"
# Antrea-native kinds a case may apply: (collection path, namespaced), in deletion order.
ANTREA_KINDS = {
    "ClusterNetworkPolicy": (f"{CRD}/clusternetworkpolicies", False),
    "NetworkPolicy": (CRD + "/namespaces/{ns}/networkpolicies", True),
    "ClusterGroup": (f"{CRD}/clustergroups", False),
    "Group": (CRD + "/namespaces/{ns}/groups", True),
    "Tier": (f"{CRD}/tiers", False),
}
STATIC_TIERS = {"emergency", "securityops", "networkops", "platform", "application", "baseline"}
GROUP_SETTLE_S = 1.0


class LabCluster:
    """`caselib.Cluster` over a running lab (API writes, in-process probe)."""

    def __init__(self, lab: Lab, client: KubeClient) -> None:
        self.lab = lab
        self.client = client
        self.ns_original: dict[str, dict[str, str]] = {}
        self.pod_original: dict[str, dict[str, str]] = {}
        self.subset: set[str] | None = None

    async def pod_ips(self) -> dict[str, str]:
        pods = (await self.client.list("/api/v1/pods")).get("items") or []
        return {
            f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"]["podIP"]
            for p in pods
            if p["metadata"]["namespace"] in ("x", "y", "z")
            and (p.get("status") or {}).get("podIP")
        }

    async def list_policies(self) -> list[tuple[str, str]]:
        out = []
        for ns in ("x", "y", "z"):
            items = (await self.client.list(NP_PATH.format(ns=ns))).get("items") or []
            out += [(ns, p["metadata"]["name"]) for p in items]
        return out

    async def apply_policy(self, policy: dict[str, Any]) -> None:
        ns = policy["metadata"].get("namespace", "default")
        name = policy["metadata"]["name"]
        path = NP_PATH.format(ns=ns)
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **policy}
        if str(policy.get("apiVersion", "")).startswith("crd.antrea.io/"):
            collection, namespaced = ANTREA_KINDS[policy["kind"]]
            path = collection.format(ns=ns) if namespaced else collection
        old = await self.client.get_or_none(f"{path}/{name}")
        if old is None:
            await self.client.create(path, body)
        else:
            body["metadata"] = {
                **body["metadata"],
                "resourceVersion": old["metadata"]["resourceVersion"],
            }
            await self.client.request("PUT", f"{path}/{name}", body=body)

    async def delete_policy(self, namespace: str, name: str) -> None:
        await self.client.delete(f"{NP_PATH.format(ns=namespace)}/{name}")

    async def _relabel(self, path: str, set_: dict[str, str], remove: list[str]) -> None:
        labels: dict[str, Any] = dict.fromkeys(remove)
        labels.update(set_)
        await self.client.merge_patch(path, {"metadata": {"labels": labels}})

    async def relabel_pod(self, key: str, set_: dict[str, str], remove: list[str]) -> None:
        ns, name = key.split("/")
        await self._relabel(f"/api/v1/namespaces/{ns}/pods/{name}", set_, remove)

    async def relabel_namespace(self, ns: str, set_: dict[str, str], remove: list[str]) -> None:
        await self._relabel(f"/api/v1/namespaces/{ns}", set_, remove)

    async def _agent_policies(self, node: str) -> list[dict[str, Any]]:
        path = netns.netns_path(self.lab.spec.node(node).netns)

        def get() -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{AGENT_API_PORT}/networkpolicies"
            with urllib.request.urlopen(url, timeout=5) as resp:
                data: list[dict[str, Any]] = json.loads(resp.read())
                return data

        return await netns.run_in(path, get)

    async def settle(self, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                views = await asyncio.gather(*(self._agent_policies(n) for n in self.lab.nodes))
                pending = [
                    p["sourceRef"]["name"]
                    for v in views
                    for p in v
                    if not p["realized"] or p["realizedGeneration"] != p["generation"]
                ]
            except OSError as exc:
                pending = [str(exc)]
            if not pending or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(GROUP_SETTLE_S)

    async def probe(self, protocol: str, port: int) -> dict[tuple[str, str], bool | str]:
        targets = await lab_targets(self.lab.spec, self.client, namespaces=["x", "y", "z"])
        doc = await probe_matrix(targets, protocol=protocol, port=port)
        marks = {"connected": ".", "dropped": "X", "rejected": "R"}
        return {(s, d): marks[v] for s, row in doc["verdicts"].items() for d, v in row.items()}

    async def remember_labels(self) -> None:
        for ns in ("x", "y", "z"):
            obj = await self.client.get(f"/api/v1/namespaces/{ns}")
            self.ns_original[ns] = dict(obj["metadata"].get("labels") or {})
            pods = (await self.client.list(f"/api/v1/namespaces/{ns}/pods")).get("items") or []
            for p in pods:
                key = f"{ns}/{p['metadata']['name']}"
                self.pod_original[key] = dict(p["metadata"].get("labels") or {})

    async def reset(self) -> None:
        for ns, name in await self.list_policies():
            await self.delete_policy(ns, name)
        for kind, (collection, namespaced) in ANTREA_KINDS.items():
            paths = (
                [collection.format(ns=n) for n in ("x", "y", "z")] if namespaced else [collection]
            )
            for path in paths:
                items = (await self.client.list(path)).get("items") or []
                for obj in items:
                    name = obj["metadata"]["name"]
                    if kind == "Tier" and name in STATIC_TIERS:
                        continue
                    await self.client.delete(f"{path}/{name}")
        for ns, want in self.ns_original.items():
            obj = await self.client.get(f"/api/v1/namespaces/{ns}")
            have = obj["metadata"].get("labels") or {}
            if have != want:
                await self._relabel(
                    f"/api/v1/namespaces/{ns}", want, [k for k in have if k not in want]
                )
        for key, want in self.pod_original.items():
            ns, name = key.split("/")
            obj = await self.client.get(f"/api/v1/namespaces/{ns}/pods/{name}")
            have = obj["metadata"].get("labels") or {}
            if have != want:
                await self._relabel(
                    f"/api/v1/namespaces/{ns}/pods/{name}", want, [k for k in have if k not in want]
                )
        await self.settle()


VARIANTS = [
    pytest.param((LabParams(nodes=2, cni="antrea", encap="vxlan"), None), id="2node-vxlan"),
    pytest.param((LabParams(nodes=3, cni="antrea", encap="geneve"), SUBSET), id="3node-geneve"),
    pytest.param((LabParams(nodes=2, cni="antrea", encap="none"), SUBSET), id="2node-noencap"),
]
# The real-Kubernetes lab (kube-apiserver, kubelets, containerd; antrea from deploy/antrea.yml):
# noEncap, since netdev encap across nodes is not there yet. Skipped without the binaries.
REAL = pytest.param(("real-noencap", SUBSET), id="real-2node-noencap",
                    marks=pytest.mark.realk8s)  # fmt: skip
if FULL:
    VARIANTS = [
        pytest.param((LabParams(nodes=n, cni="antrea", encap=e), None), id=f"{n}node-{e}")
        for n in (2, 3)
        for e in ("vxlan", "none")
    ]
VARIANTS.append(REAL)
CHECKS = ("enforcement-latency", "no-stale-flows", "antrea-api", "priority-reassignment")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[LabCluster]:
    """One lab per variant, shared by all its cases (pytest groups the tests by variant)."""
    from antrea.lab.testing import lab_session, real_lab_session

    params, subset = request.param
    session = (
        real_lab_session(encap_mode="noEncap", tag="cf")
        if params == "real-noencap"
        else lab_session(params)
    )
    with session as lab:
        await lab.create_model()
        async with lab.client() as client:
            c = LabCluster(lab, client)
            c.subset = subset
            await c.remember_labels()
            yield c


async def _enforcement_latency(cluster: LabCluster) -> None:
    """How long from the API write until a new connection is refused (reported, not asserted)."""
    ips = await cluster.pod_ips()
    targets = {
        t.key: t
        for t in await lab_targets(cluster.lab.spec, cluster.client, namespaces=["x", "y", "z"])
    }
    from antrea.lab.probe import probe_pair

    src, dst = targets["y/b"], targets["x/a"]
    assert await probe_pair(src, dst, protocol="TCP", port=80)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await cluster.apply_policy(
        {
            "metadata": {"namespace": "x", "name": "latency"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]},
        }
    )
    blocked_after = None
    while loop.time() - start < 15:
        sock_ok = await _connect_once(src, ips["x/a"])
        if not sock_ok:
            blocked_after = loop.time() - start
            break
        await asyncio.sleep(0.02)
    print(f"\nenforcement latency (API write -> new connection refused): {blocked_after}")
    assert blocked_after is not None, "policy never enforced"
    await cluster.delete_policy("x", "latency")
    start = loop.time()
    while loop.time() - start < 15:
        if await _connect_once(src, ips["x/a"]):
            break
    print(f"un-enforcement latency: {loop.time() - start:.3f}s")


async def _connect_once(src: Any, ip: str) -> bool:
    import socket

    sock = await netns.socket_in(src.netns_path, socket.AF_INET, socket.SOCK_STREAM)
    try:
        async with asyncio.timeout(0.3):
            await asyncio.get_running_loop().sock_connect(sock, (ip, 80))
            return True
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def _no_stale_flows(cluster: LabCluster) -> None:
    """After every case (all policies deleted) no node keeps a policy-specific flow."""
    await cluster.settle()
    for node in cluster.lab.nodes:
        path = netns.netns_path(cluster.lab.spec.node(node).netns)

        def get() -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{AGENT_API_PORT}/ovsflows?category=network_policy"
            with urllib.request.urlopen(url, timeout=5) as resp:
                data: list[dict[str, Any]] = json.loads(resp.read())
                return data

        flows = await netns.run_in(path, get)
        specific = [
            f["flow"]
            for f in flows
            if "conj" in f["flow"] or "actions=drop" in f["flow"] or "ct_label=" in f["flow"]
        ]
        assert not specific, f"{node} kept policy flows:\n" + "\n".join(specific)
        assert flows, f"{node}: the fixed policy flows are missing"


async def _table(cluster: LabCluster, path: str) -> dict[str, Any]:
    """The server-side table `kubectl get` prints (columns and cells)."""
    c = cluster.client
    async with c.session.get(
        c.config.server + path,
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        server_hostname=c.config.server_name,
    ) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def _eventually(check: Any, what: str, timeout: float = 40.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.5)


async def _try_delete(client: KubeClient, path: str) -> bool:
    try:
        await client.delete(path)
        return True
    except ApiError:
        return False


async def _antrea_api(cluster: LabCluster) -> None:
    """The CRDs print upstream's columns; static Tiers exist; a referenced Tier stays."""
    tiers = await _table(cluster, f"{CRD}/tiers")
    names = [col["name"] for col in tiers["columnDefinitions"]]
    assert names[:2] == ["Name", "Priority"] and "Age" in names
    prio = {row["cells"][0]: row["cells"][1] for row in tiers["rows"]}
    assert {k: prio[k] for k in STATIC_TIERS} == {
        "emergency": 50, "securityops": 100, "networkops": 150, "platform": 200,
        "application": 250, "baseline": 253,
    }  # fmt: skip
    acnps = await _table(cluster, f"{CRD}/clusternetworkpolicies")
    assert [col["name"] for col in acnps["columnDefinitions"]] == [
        "Name", "Tier", "Priority", "Desired Nodes", "Current Nodes", "Age"
    ]  # fmt: skip
    client = cluster.client
    tier_path = f"{CRD}/tiers/in-use"
    await client.create(f"{CRD}/tiers", {"apiVersion": "crd.antrea.io/v1beta1", "kind": "Tier",
                                         "metadata": {"name": "in-use"},
                                         "spec": {"priority": 99}})  # fmt: skip
    await client.create(
        f"{CRD}/clusternetworkpolicies",
        {"apiVersion": "crd.antrea.io/v1beta1", "kind": "ClusterNetworkPolicy",
         "metadata": {"name": "uses-tier"},
         "spec": {"priority": 1, "tier": "in-use",
                  "appliedTo": [{"podSelector": {"matchLabels": {"pod": "nobody"}}}],
                  "ingress": [{"action": "Drop"}]}},
    )  # fmt: skip

    async def finalized() -> bool:
        obj = await client.get(tier_path)
        return bool(obj["metadata"].get("finalizers"))

    await _eventually(finalized, "the referenced tier's finalizer")
    # Refused by the admission webhook when it is registered; else kept by the finalizer.
    try:
        await client.delete(tier_path)
        refused = False
    except ApiError as exc:
        assert "referenced" in str(exc), exc
        refused = True
    obj = await client.get(tier_path)  # still there: a policy references it
    assert refused or obj["metadata"].get("deletionTimestamp")
    await client.delete(f"{CRD}/clusternetworkpolicies/uses-tier")
    if refused:
        await _eventually(lambda: _try_delete(client, tier_path), "deleting the unused tier")

    async def gone() -> bool:
        return await client.get_or_none(tier_path) is None

    await _eventually(gone, "the tier deleted once unreferenced")


def _acnp(name: str, prio: float, rule: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "crd.antrea.io/v1beta1", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"priority": prio,
                     "appliedTo": [{"podSelector": {"matchLabels": {"pod": "a"}},
                                    "namespaceSelector": {"matchLabels": {"ns": "x"}}}],
                     "ingress": [rule]}}  # fmt: skip


async def _priority_reassignment(cluster: LabCluster) -> None:
    """Policies inserted until the Allow rule y/b -> x/a must move to a new OpenFlow priority:
    new connections it allows, opened every 20 ms meanwhile, never fail (one bundle)."""
    targets = {
        t.key: t
        for t in await lab_targets(cluster.lab.spec, cluster.client, namespaces=["x", "y", "z"])
    }
    src, dst = targets["y/b"], targets["x/a"]
    path = f"{CRD}/clusternetworkpolicies"
    from_yb = {"podSelector": {"matchLabels": {"pod": "b"}},
               "namespaceSelector": {"matchLabels": {"ns": "y"}}}  # fmt: skip
    await cluster.client.create(path, _acnp("allow-yb", 1, {"action": "Allow", "from": [from_yb]}))
    await cluster.client.create(path, _acnp("drop-all", 100, {"action": "Drop"}))
    await cluster.settle()
    from antrea.lab.probe import probe_pair

    assert await probe_pair(src, dst, protocol="TCP", port=80)
    results: list[bool] = []
    stop = asyncio.Event()

    async def connect_loop() -> None:
        while not stop.is_set():
            results.append(await _connect_once(src, dst.ip))
            await asyncio.sleep(0.02)

    task = asyncio.get_running_loop().create_task(connect_loop())
    try:
        # Each lands between allow-yb and the previous one: the gap halves until none is left.
        for n, prio in enumerate((50, 25, 12, 6, 3, 2)):
            from_z = {"namespaceSelector": {"matchLabels": {"ns": "z"}}}
            await cluster.client.create(
                path, _acnp(f"between-{n}", prio, {"action": "Drop", "from": [from_z]})
            )
            await cluster.settle()
    finally:
        stop.set()
        await task
    assert len(results) > 20 and all(results), f"{results.count(False)} of {len(results)} failed"
    flows = []
    for node in cluster.lab.nodes:
        npath = netns.netns_path(cluster.lab.spec.node(node).netns)

        def get() -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{AGENT_API_PORT}/ovsflows?category=network_policy"
            with urllib.request.urlopen(url, timeout=5) as resp:
                data: list[dict[str, Any]] = json.loads(resp.read())
                return data

        flows += [f["flow"] for f in await netns.run_in(npath, get)]
    # The first rule placed (allow-yb, at the middle of 1,000..60,000) had to move up by one.
    assert any("table=85" in f and "priority=30501" in f for f in flows), "no reassignment"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("cluster", VARIANTS, indirect=True, scope="module")
@pytest.mark.parametrize("case", [*CASES, *CHECKS], ids=[c.label for c in CASES] + list(CHECKS))
async def test_conformance(cluster: LabCluster, case: Any) -> None:
    if not isinstance(case, str) and cluster.subset is not None and case.id not in cluster.subset:
        pytest.skip("not in this variant's CI subset (ANTREA_CONFORMANCE_FULL=1 runs all)")
    if case == "no-stale-flows":
        await cluster.reset()
        await _no_stale_flows(cluster)
        return
    if case == "priority-reassignment":
        if cluster.subset is not None or cluster.lab.spec.kubernetes == "real":
            pytest.skip("checked on the default lab")
        await cluster.reset()
        try:
            await _priority_reassignment(cluster)
        finally:
            await cluster.reset()
        return
    if case == "antrea-api":
        if cluster.subset is not None or cluster.lab.spec.kubernetes == "real":
            pytest.skip("checked on the default lab")
        await cluster.reset()
        await _antrea_api(cluster)
        return
    if case == "enforcement-latency":
        await cluster.reset()
        try:
            await _enforcement_latency(cluster)
        finally:
            await cluster.reset()
        return
    await cluster.reset()
    try:
        failures = await caselib.run_case(case, cluster)
    finally:
        await cluster.reset()
    assert not failures, "\n".join(failures)
