"""Kubernetes NetworkPolicy conformance in the lab: the upstream x/y/z x a/b/c model.

Every case of /work/shared/netpol-cases and tests/e2e/netpol/cases runs against ONE lab per
variant (policies and labels are reset between cases), probing real TCP/UDP between pods spread
over the nodes with the lab's probe (the diagonal is skipped as upstream does).

Variants:
- CI (default): 2 nodes, VXLAN encap, every case; 3 nodes Geneve and 2 nodes noEncap run a
  representative subset (`SUBSET`: deny-all, ports, named ports, ingress+egress, ipBlock except,
  egress named port, pod relabel, cross-namespace, egress ipBlocks).
- ``ANTREA_CONFORMANCE_FULL=1``: every case in all four variants (2/3 nodes x encap/noEncap).

Each variant is one xdist group (its ``xdist_group`` mark; the real-Kubernetes one runs every
case split over two clusters, groups ``realk8s-conformance-a``/``-b``): `bin/test` runs the
variants side by side, each in its own worker process with its own lab (tests/conftest.py).

Antrea-native cases (/work/shared/netpol-cases-antrea and tests/e2e/netpol/cases-antrea: Tiers,
ClusterNetworkPolicies, Antrea NetworkPolicies, groups; ids prefixed ``antrea-``) run in the
same labs: every one on the default 2-node VXLAN lab, `ANTREA_SUBSET` (Reject, Pass with Self,
tiers, baseline) on the other CI variants. Their matrices tell dropped (X) from rejected (R):
the probe's verdicts are compared, not just connected or not.

After each step the test waits until the cluster is settled (`LabCluster.pending`): every policy
in the API is compiled by the controller at its current generation and realized at that
generation by the agent of every node of its span (the controller's, read from inside a node);
nothing deleted is held anywhere. Then ~1 s for group-only changes (relabels) that do not bump
a generation. (The agents' own views alone passed at once, in 3 of 12 tries, when no agent had
received the new policy yet; the probe then raced the realization, and since the datapath's
cached megaflows are revalidated one by one, such a race lets single sources through while
others to the same pod are already dropped: measured, x/b, y/a, y/c -> z/b leaked while x/a ->
z/b, probed first, was dropped. That is the CI flake of case 116, y/b -> z/c.) A wrong cell
fails with diagnostics (`LabCluster.diagnose`): the settle trail (what it waited for, when) and
the settle state right after the probe, the pair's datapath flows as they were at the failure,
the pair probed again, then per node: policies, policy flows and conjunction IDs, the pair's
OVS and kernel conntrack entries, its datapath flows after the re-probe, an ``ofproto/trace``
of its first packet, the nonzero Antrea iptables counters, upcall/show and vswitchd's warnings.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from antrea.testbed.lab import netns
from antrea.testbed.lab.kube import ApiError, KubeClient
from antrea.testbed.lab.probe import lab_targets, probe_matrix
from antrea.testbed.lab.state import AGENT_API_PORT
from antrea.testbed.lab.testing import Lab, LabParams

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
CONTROLPLANE = "/apis/controlplane.antrea.io/v1beta2"
# Every policy kind settle waits for, listed across namespaces.
POLICY_COLLECTIONS = {
    "NetworkPolicy": "/apis/networking.k8s.io/v1/networkpolicies",
    "ClusterNetworkPolicy": f"{CRD}/clusternetworkpolicies",
    "Antrea NetworkPolicy": f"{CRD}/networkpolicies",
}


def _flow_text(flow: str) -> str:
    """A dumped flow without its volatile fields (cookie kept: it names the conjunction)."""
    return re.sub(r" ?(duration|n_bytes|idle_age|hard_age)=[^,]*,", "", flow)


def _ct_remaining(line: str) -> int:
    """The seconds left of a /proc/net/nf_conntrack line ("ipv4 2 tcp 6 <left> ...")."""
    f = line.split()
    return int(f[4]) if len(f) > 4 and f[4].isdigit() else 0


def _ref(p: dict[str, Any]) -> str:
    ref = p.get("sourceRef") or {}
    where = f"{ref['namespace']}/" if ref.get("namespace") else ""
    return f"{ref.get('type', '?')} {where}{ref.get('name', p['metadata']['name'])}"


def _pending(
    api: dict[str, tuple[str, int]],
    ctrl: dict[str, dict[str, Any]],
    nodes: list[str],
    views: list[list[dict[str, Any]]],
) -> list[str]:
    """`LabCluster.pending` on the three views: the API's policies (UID -> (what,
    generation)), the controller's (by UID, with ``span``) and each node's agent's."""
    out: list[str] = []
    for uid, (what, gen) in sorted(api.items(), key=lambda kv: kv[1]):
        p = ctrl.get(uid)
        if p is None:
            out.append(f"{what}: not compiled by the controller yet")
        elif p.get("generation") != gen:
            out.append(f"{what}: controller at generation {p.get('generation')}, API {gen}")
    for uid, p in ctrl.items():
        if uid not in api:
            out.append(f"controller still holds deleted {_ref(p)}")
    for node, view in zip(nodes, views, strict=True):
        held = {p["metadata"]["name"]: p for p in view}
        want = {
            uid
            for uid, p in ctrl.items()
            if uid in api and p.get("generation") == api[uid][1] and node in p.get("span", ())
        }
        for uid in sorted(want):
            what, gen = api[uid]
            a = held.get(uid)
            if a is None:
                out.append(f"{node}: {what} not received")
            elif a.get("generation") != gen:
                out.append(f"{node}: {what} at generation {a.get('generation')}, API {gen}")
            elif not a.get("realized") or a.get("realizedGeneration") != gen:
                msg = a.get("message") or a.get("phase") or ""
                out.append(f"{node}: {what} not realized at generation {gen} ({msg})")
        for uid, a in held.items():
            if uid not in api:
                out.append(f"{node}: still holds deleted {_ref(a)}")
            elif uid in ctrl and node not in (ctrl[uid].get("span") or ()):
                out.append(f"{node}: still holds {api[uid][0]} (not in its span)")
    return out


def _pending_without_span(
    api: dict[str, tuple[str, int]], nodes: list[str], views: list[list[dict[str, Any]]]
) -> list[str]:
    """The settle check when the controller cannot be asked: every policy an agent holds is
    in the API and realized at the API's generation (a policy no agent received yet goes
    unnoticed: the weaker check)."""
    out = []
    for node, view in zip(nodes, views, strict=True):
        for a in view:
            uid = a["metadata"]["name"]
            if uid not in api:
                out.append(f"{node}: still holds deleted {_ref(a)}")
                continue
            what, gen = api[uid]
            if not a.get("realized") or a.get("realizedGeneration") != gen:
                out.append(f"{node}: {what} not realized at generation {gen}")
    return out


class LabCluster:
    """`caselib.Cluster` over a running lab (API writes, in-process probe)."""

    def __init__(self, lab: Lab, client: KubeClient) -> None:
        self.lab = lab
        self.client = client
        self.ns_original: dict[str, dict[str, str]] = {}
        self.pod_original: dict[str, dict[str, str]] = {}
        self.subset: set[str] | None = None
        self._controller: tuple[str, int, ssl.SSLContext] | None = None
        self.last_settle = ""
        # what the last settle waited for, when (changes only), and the settle state right
        # after the last probe: a probe that raced the realization shows here
        self.settle_trail: list[str] = []
        self.after_probe = ""
        self.no_controller = ""  # why the controller's span is not used (unreachable)

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

    def _netns(self, node: str) -> Path:
        return netns.netns_path(self.lab.spec.node(node).netns)

    async def _agent_get(self, node: str, path: str) -> Any:
        """A GET on one node's agent API (from inside the node's namespace)."""

        def get() -> Any:
            url = f"http://127.0.0.1:{AGENT_API_PORT}{path}"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())

        return await netns.run_in(self._netns(node), get)

    async def _agent_policies(self, node: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self._agent_get(node, "/networkpolicies")
        return data

    async def _controller_policies(self) -> dict[str, dict[str, Any]]:
        """The controller's internal policies by name (the source's UID), with their span.

        Asked from inside the first node (the controller listens on a node address), at the
        leader found in Endpoints kube-system/antrea, trusting ConfigMap kube-system/antrea-ca.
        """
        if self._controller is None:
            ep = await self.client.get("/api/v1/namespaces/kube-system/endpoints/antrea")
            subset = (ep.get("subsets") or [{}])[0]
            host = subset["addresses"][0]["ip"]
            ports = subset.get("ports") or []
            port = next((p["port"] for p in ports if p.get("name") == "https"), ports[0]["port"])
            cm = await self.client.get("/api/v1/namespaces/kube-system/configmaps/antrea-ca")
            ctx = ssl.create_default_context(cadata=cm["data"]["ca.crt"])
            self._controller = (str(host), int(port), ctx)
        host, port, ctx = self._controller
        token = self.client.config.token

        def get() -> Any:
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
            try:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                conn.request("GET", f"{CONTROLPLANE}/networkpolicies", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise OSError(f"controller: HTTP {resp.status}: {body[:200]!r}")
                return json.loads(body)
            finally:
                conn.close()

        try:
            data = await netns.run_in(self._netns(self.lab.nodes[0]), get)
        except OSError:
            self._controller = None  # rediscover (a new leader) next time
            raise
        return {p["metadata"]["name"]: p for p in data.get("items") or []}

    async def _api_policies(self) -> dict[str, tuple[str, int]]:
        """Every policy in the API, K8s and Antrea-native: UID -> (description, generation)."""
        out: dict[str, tuple[str, int]] = {}
        for kind, path in POLICY_COLLECTIONS.items():
            for obj in (await self.client.list(path)).get("items") or []:
                md = obj["metadata"]
                where = f"{md['namespace']}/" if md.get("namespace") else ""
                out[md["uid"]] = (f"{kind} {where}{md['name']}", int(md.get("generation") or 0))
        return out

    async def pending(self) -> list[str]:
        """Why the cluster is not settled yet (empty: settled).

        Settled means: every policy in the API (Kubernetes and Antrea-native) is compiled by
        the controller at its current generation, and realized at that generation by the agent
        of every node of its span (the nodes hosting a pod it applies to); no agent and not the
        controller still holds a policy deleted from the API, and no agent holds a policy
        outside its span. A policy an agent has not received yet, or a delete it has not seen
        yet, therefore holds the settle (the agents' own views alone would not).
        """
        api = await self._api_policies()
        nodes = list(self.lab.nodes)
        views = await asyncio.gather(*(self._agent_policies(n) for n in nodes))
        if self.no_controller:
            return _pending_without_span(api, nodes, views)
        try:
            ctrl = await self._controller_policies()
        except (OSError, ApiError, KeyError, IndexError, ValueError) as exc:
            # Not reachable from here (a lab without the admin token the controller accepts):
            # say so once and settle on what the API and the agents say.
            self.no_controller = f"{type(exc).__name__}: {exc}"
            print(f"\nwarning: settle without the controller's span: {self.no_controller}")
            return _pending_without_span(api, nodes, views)
        return _pending(api, ctrl, nodes, views)

    async def settle(self, timeout: float = 15.0) -> None:
        """Until `pending` is empty (or `timeout`), then ~1 s for group-only changes."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.settle_trail = []
        seen: list[str] | None = None
        while True:
            try:
                pending = await self.pending()
            except (OSError, ApiError, KeyError, IndexError, ValueError) as exc:
                pending = [f"{type(exc).__name__}: {exc}"]
            if pending != seen:
                seen = pending
                what = "; ".join(pending[:6]) or "settled"
                self.settle_trail.append(f"{loop.time() - start:.2f}s {what}")
            if not pending or loop.time() - start > timeout:
                break
            await asyncio.sleep(0.1)
        waited = loop.time() - start
        self.last_settle = (
            f"settled in {waited:.2f}s"
            if not pending
            else f"NOT settled after {waited:.1f}s: " + "; ".join(pending[:10])
        )
        if pending:
            print(f"\nwarning: {self.last_settle}")
        await asyncio.sleep(GROUP_SETTLE_S)

    async def diagnose(
        self, expect: Any, got: dict[tuple[str, str], bool | str], ignore_loopback: bool
    ) -> str:
        """What a wrong cell needs to be understood from the CI log alone: the settle outcome,
        the datapath flows (megaflows) of up to 3 pairs as they were at the failure, the pairs
        probed again, then per node: policies, policy flows (conjunction IDs), the pair's
        megaflows after the re-probe, an ``ofproto/trace`` of the pair's SYN (or first UDP
        packet) against the installed tables, OVS and kernel conntrack entries, the nonzero
        counters of the node's Antrea iptables chains and the revalidators' state."""
        pairs = [
            (s, d)
            for (s, d), want in sorted(expect.matrix.items())
            if not (ignore_loopback and s == d)
            and caselib.mark_of(got.get((s, d))) != expect.marks.get((s, d), caselib.mark_of(want))
        ]
        out = [f"diagnostics (last settle: {self.last_settle or 'none'}):"]
        out += [f"  settle trail: {t}" for t in self.settle_trail[-12:]]
        out.append(f"  settle right after the probe: {self.after_probe or '?'}")
        if self.no_controller:
            out.append(f"  (settle without the controller's span: {self.no_controller})")
        try:
            pods = (await self.client.list("/api/v1/pods")).get("items") or []
            where = {
                f"{p['metadata']['namespace']}/{p['metadata']['name']}": (
                    (p.get("spec") or {}).get("nodeName") or "?",
                    (p.get("status") or {}).get("podIP") or "?",
                )
                for p in pods
            }
            targets = {
                t.key: t
                for t in await lab_targets(self.lab.spec, self.client, namespaces=["x", "y", "z"])
            }
            nodes: list[str] = []
            for s, d in pairs[:3]:
                for key in (d, s):
                    n = where.get(key, ("?", "?"))[0]
                    if n in self.lab.nodes and n not in nodes:
                        nodes.append(n)
            ips = [(where[s][1], where[d][1]) for s, d in pairs[:3] if s in where and d in where]
            # The megaflows the probe used, before the re-probe adds its own.
            for n in nodes:
                out.append(f"  node {n} at the failure:")
                out += await self._datapath_flows(n, ips)
            from antrea.testbed.lab.probe import probe_pair_verdict

            again = await asyncio.gather(
                *(
                    probe_pair_verdict(
                        targets[s], targets[d], protocol=expect.protocol, port=expect.port
                    )
                    for s, d in pairs[:6]
                )
            )
            for (s, d), verdict in zip(pairs[:6], again, strict=True):
                out.append(
                    f"  {s} ({'@'.join(where.get(s, ('?', '?')))}) -> "
                    f"{d} ({'@'.join(where.get(d, ('?', '?')))}): probed again: {verdict}"
                )
            try:
                pending = await self.pending()
                out.append("  settle now: " + ("; ".join(pending[:10]) or "settled"))
            except Exception as exc:
                out.append(f"  settle now: {type(exc).__name__}: {exc}")
            for n in nodes:
                out += await self._node_diagnostics(n, ips)
                for s, d in pairs[:3]:
                    if s in targets and d in targets and where[d][0] == n:
                        out += await self._trace(n, targets[s], targets[d], expect)
            # A wrong verdict that survives the re-probe while the flow tables are right points
            # at a stale datapath flow (a megaflow the revalidators kept): drop every datapath
            # flow of the nodes involved and probe once more. Diagnostics only; the failure
            # stands either way.
            for n in nodes:
                await self._node_run(n, ["ovs-appctl", "revalidator/purge"], ovs=True)
            purged = await asyncio.gather(
                *(
                    probe_pair_verdict(
                        targets[s], targets[d], protocol=expect.protocol, port=expect.port
                    )
                    for s, d in pairs[:6]
                )
            )
            for (s, d), verdict in zip(pairs[:6], purged, strict=True):
                out.append(f"  {s} -> {d}: probed after revalidator/purge: {verdict}")
        except Exception as exc:  # diagnostics never hide the failure itself
            out.append(f"  (diagnostics failed: {type(exc).__name__}: {exc})")
        return "\n".join(out)

    async def _agent_pod(self, node: str) -> str:
        """The name of the antrea-agent pod on ``node`` (a real-Kubernetes lab)."""
        path = "/api/v1/namespaces/kube-system/pods"
        pods = await self.client.list(path, labelSelector="component=antrea-agent")
        for p in pods.get("items") or ():
            if (p.get("spec") or {}).get("nodeName") == node:
                return str(p["metadata"]["name"])
        raise LookupError(f"no antrea-agent pod on {node}")

    async def _node_run(
        self, node: str, argv: list[str], *, ovs: bool = False, container: str = "antrea-ovs"
    ) -> str:
        """A command's output (stdout and stderr) inside the node's namespace (with its OVS
        environment when ``ovs``). On a real-Kubernetes lab OVS runs in the agent pod: ``ovs``
        commands run there (``kubectl exec``, in ``container``: antrea-ovs, whose PID namespace
        holds ovs-vswitchd, so ``ovs-appctl`` finds it by its pidfile; from antrea-agent it
        calls the pidfile stale)."""
        env = dict(os.environ, **self.lab.spec.node(node).env()) if ovs else None
        if ovs and self.lab.spec.kubernetes == "real":
            from antrea.testbed.lab.realk8s import binaries
            from antrea.testbed.lab.testing import real_kubectl

            kubectl = real_kubectl(binaries.search_dir())
            pod = await self._agent_pod(node)
            argv = [kubectl, f"--kubeconfig={self.lab.spec.kubeconfig}", "exec", "-n",
                    "kube-system", pod, "-c", container, "--", *argv]  # fmt: skip
            env = None
        elif not ovs:
            argv = netns.exec_argv(self.lab.spec.node(node).netns, argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        return (await proc.communicate())[0].decode(errors="replace")

    async def _datapath_flows(self, node: str, pairs: list[tuple[str, str]]) -> list[str]:
        """Every datapath flow (megaflow, with its ufid and statistics) naming an address of the
        given pairs as source or destination, in full: a wildcarded source still names the
        destination."""
        ips = {ip for pair in pairs for ip in pair}
        text = await self._node_run(node, ["ovs-appctl", "dpctl/dump-flows", "-m"], ovs=True)
        lines = [
            ln.strip()
            for ln in text.splitlines()
            if any(f"src={ip}" in ln or f"dst={ip}" in ln for ip in ips)
        ]
        return [f"    dpctl/dump-flows {ln}" for ln in lines[:60]] or ["    dpctl/dump-flows: none"]

    async def _trace(self, node: str, src: Any, dst: Any, expect: Any) -> list[str]:
        """``ofproto/trace`` of the pair's first packet (a new connection) entering the
        destination node's bridge: from the source pod's port when local, else from gw0 (as in
        noEncap; encap traffic comes in through the tunnel instead, not traced here)."""

        async def mac(path: str, dev: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--net={path}", "ip", "-j", "link", "show", dev,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            data = json.loads((await proc.communicate())[0] or b"[{}]")
            return str(data[0].get("address", "00:00:00:00:00:00"))

        dst_mac = await mac(dst.netns_path, "eth0")
        node_ns = str(self._netns(node))
        proto = "tcp" if expect.protocol == "TCP" else "udp"
        fields = [
            "in_port=gw0",
            proto,
            f"dl_src={await mac(node_ns, 'gw0')}",
            f"dl_dst={dst_mac}",
            f"nw_src={src.ip}",
            f"nw_dst={dst.ip}",
            "nw_ttl=62",
            "tp_src=45678",
            f"tp_dst={expect.port}",
        ]
        if proto == "tcp":
            fields.append("tcp_flags=syn")
        argv = ["ovs-appctl", "ofproto/trace", "br-int", ",".join(fields)]
        argv += ["--ct-next", "trk,new", "--ct-next", "trk,new"]
        text = await self._node_run(node, argv, ovs=True)
        keep = [ln.rstrip() for ln in text.splitlines() if ln.strip() and "-----" not in ln]
        return [f"    trace {src.key} -> {dst.key} from gw0: {','.join(fields)}"] + [
            f"      {ln}" for ln in keep[:80]
        ]

    async def _node_diagnostics(self, node: str, pairs: list[tuple[str, str]]) -> list[str]:
        """One node's policies (conjunction IDs), policy flows, and the conntrack entries and
        datapath flows of the given (source IP, destination IP) pairs, either direction; the
        kernel's conntrack entries of the pairs and the nonzero Antrea iptables counters of the
        node's host stack; the revalidators' state."""
        out = [f"  node {node}:"]
        for p in await self._agent_policies(node):
            conjs = [c for r in p.get("rules") or () for c in r.get("conjunctions") or ()]
            out.append(
                f"    policy {_ref(p)} gen={p.get('generation')} "
                f"realized={p.get('realized')}@{p.get('realizedGeneration')} conj_ids={conjs}"
            )
        flows = await self._agent_get(node, "/ovsflows?category=network_policy")
        out += [f"    flow {_flow_text(f['flow'])}" for f in flows][:150]

        def about_pair(line: str) -> bool:
            return any(
                (f"src={a}" in line and f"dst={b}" in line)
                or (f"src={b}" in line and f"dst={a}" in line)
                for a, b in pairs
            )

        text = await self._node_run(node, ["ovs-appctl", "dpctl/dump-conntrack"], ovs=True)
        lines = [ln.strip() for ln in text.splitlines() if about_pair(ln)]
        out += [f"    dpctl/dump-conntrack {ln}" for ln in lines[:40]] or [
            "    dpctl/dump-conntrack: none"
        ]
        out.append("    after the re-probe:")
        out += await self._datapath_flows(node, pairs)
        text = await self._node_run(node, ["cat", "/proc/net/nf_conntrack"])
        lines = [ln.strip() for ln in text.splitlines() if about_pair(ln)]
        # the most recent first (the highest remaining timeout of a state), so the entries of
        # the failing probe and the re-probe are not cut off by older ones
        lines.sort(key=_ct_remaining, reverse=True)
        out += [f"    kernel conntrack {ln}" for ln in lines[:30]] or ["    kernel conntrack: none"]
        # a stale neighbour entry for a pair's pod on gw0 blackholes the host's forwarding to it
        ips = {ip for pair in pairs for ip in pair}
        text = await self._node_run(node, ["ip", "neigh", "show", "dev", "gw0"])
        for ln in text.splitlines():
            if ln.split()[:1] and ln.split()[0] in ips:
                out.append(f"    gw0 neigh {ln}")
        for table in ("nat", "filter", "mangle", "raw"):
            text = await self._node_run(node, ["iptables-save", "-c", "-t", table])
            out += [
                f"    iptables -t {table} {ln}"
                for ln in text.splitlines()
                if "ANTREA" in ln and ln.startswith("[") and not ln.startswith("[0:0]")
            ]
        text = await self._node_run(node, ["ovs-appctl", "upcall/show"], ovs=True)
        out += [f"    upcall/show {ln.strip()}" for ln in text.splitlines() if ln.strip()][:12]
        # e.g. "Spent an unreasonably long ...ms dumping flows" (a starved revalidator)
        if self.lab.spec.kubernetes == "real":
            argv = ["tail", "-n", "3000", "/var/log/openvswitch/ovs-vswitchd.log"]
            text = await self._node_run(node, argv, ovs=True)
            lines = text.splitlines()
        else:
            log = self.lab.spec.node(node).ovs_dir / "ovs-vswitchd.log"
            try:
                lines = (await asyncio.to_thread(log.read_text, errors="replace")).splitlines()
            except OSError as exc:
                lines = [f"(unreadable: {exc})"]
        bad = [
            ln
            for ln in lines
            if ("|WARN|" in ln or "|ERR|" in ln or "|EMER|" in ln)
            and "enumerate system datapaths" not in ln  # dpctl/ without a datapath name
        ]
        out += [f"    ovs-vswitchd.log {ln}" for ln in bad[-15:]]
        return out

    async def probe(self, protocol: str, port: int) -> dict[tuple[str, str], bool | str]:
        targets = await lab_targets(self.lab.spec, self.client, namespaces=["x", "y", "z"])
        doc = await probe_matrix(targets, protocol=protocol, port=port)
        try:
            self.after_probe = "; ".join(await self.pending()) or "settled"
        except (OSError, ApiError, KeyError, IndexError, ValueError) as exc:
            self.after_probe = f"{type(exc).__name__}: {exc}"
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


def _variant(params: LabParams, subset: set[str] | None, id: str) -> Any:
    """One lab variant; its cases form one xdist group, so one worker owns its lab (bin/test)."""
    return pytest.param((params, subset), id=id, marks=pytest.mark.xdist_group(f"conformance-{id}"))


VARIANTS = [
    _variant(LabParams(nodes=2, cni="antrea", encap="vxlan"), None, "2node-vxlan"),
    _variant(LabParams(nodes=3, cni="antrea", encap="geneve"), SUBSET, "3node-geneve"),
    _variant(LabParams(nodes=2, cni="antrea", encap="none"), SUBSET, "2node-noencap"),
]
if FULL:
    VARIANTS = [
        _variant(LabParams(nodes=n, cni="antrea", encap=e), None, f"{n}node-{e}")
        for n in (2, 3)
        for e in ("vxlan", "none")
    ]
# The real-Kubernetes lab (kube-apiserver, kubelets, containerd; antrea from deploy/antrea.yml),
# noEncap: every case, split over two clusters that run side by side (each its own xdist group;
# `only_cases` deselects the other half's: tests/conftest.py). Skipped without the binaries.
REAL_CASES = [c.id for c in CASES]
for half, ids in (("a", REAL_CASES[0::2]), ("b", REAL_CASES[1::2])):
    VARIANTS.append(pytest.param(("real-noencap", None), id=f"real-2node-noencap-{half}", marks=[
        pytest.mark.realk8s, pytest.mark.xdist_group(f"realk8s-conformance-{half}"),
        pytest.mark.only_cases([*ids, "enforcement-latency", "no-stale-flows"])]))  # fmt: skip
CHECKS = ("enforcement-latency", "no-stale-flows", "antrea-api", "priority-reassignment")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[LabCluster]:
    """One lab per variant, shared by all its cases (pytest groups the tests by variant)."""
    from antrea.testbed.lab.testing import lab_session, real_lab_session

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
    from antrea.testbed.lab.probe import probe_pair

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
    from antrea.testbed.lab.probe import probe_pair

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


def _agent_view(uid: str, gen: int, realized: int | None) -> dict[str, Any]:
    return {
        "metadata": {"name": uid},
        "sourceRef": {"type": "K8sNetworkPolicy", "namespace": "z", "name": uid},
        "generation": gen,
        "realized": realized is not None,
        "realizedGeneration": realized,
    }


def test_settle_holds_what_an_agent_has_not_received_or_not_forgotten() -> None:
    """The settle's rule on the three views (no lab): the old one read the agents' views
    alone, so a policy no agent had received yet (or a delete none had seen) passed."""
    api = {"u1": ("NetworkPolicy z/ns-local", 2)}
    ctrl = {"u1": {"metadata": {"name": "u1"}, "generation": 2, "span": ["node1"]}}
    nodes = ["node1", "node2"]
    # node1 has not received it: the agents' own views are all "realized" (empty)
    assert _pending(api, ctrl, nodes, [[], []]) == ["node1: NetworkPolicy z/ns-local not received"]
    # received, realized at the previous generation only
    assert _pending(api, ctrl, nodes, [[_agent_view("u1", 2, 1)], []])
    # the controller has not compiled the update yet
    old_ctrl = {"u1": {**ctrl["u1"], "generation": 1}}
    assert _pending(api, old_ctrl, nodes, [[_agent_view("u1", 1, 1)], []])
    # a deleted policy still held by node2, or held outside its span
    gone = _agent_view("u0", 1, 1)
    assert _pending(api, ctrl, nodes, [[_agent_view("u1", 2, 2)], [gone]]) == [
        "node2: still holds deleted K8sNetworkPolicy z/u0"
    ]
    assert _pending(api, ctrl, nodes, [[_agent_view("u1", 2, 2)], [_agent_view("u1", 2, 2)]])
    # settled
    assert _pending(api, ctrl, nodes, [[_agent_view("u1", 2, 2)], []]) == []
