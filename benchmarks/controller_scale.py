"""Scale benchmark of the NetworkPolicy compiler, shaped like upstream Antrea's
``TestInitXLargeScaleWithSmallNamespaces`` (pkg/controller/networkpolicy, perf test).

Per namespace (default 25,000, labelled ``app=<ns>``): four pods (two ``app-1=scale-1``, two
``app-2=scale-2``, each on a random node of 1,000 with a random IP) and three policies:
``default-deny-all`` (empty podSelector, both policyTypes), ``np-1`` (selects app-1, ingress from
app-1, both policyTypes) and ``np-2`` (the same for app-2).

Objects are generated first, serialized and decoded as the list responses an informer would get
(so the timed part starts from decoded JSON dicts), then fed in one batch (as the controller does
after its informers sync). Measured: wall time until every group, policy and span is computed
(with a listener receiving every change), peak RSS of the process, and the cost of single pod
adds and pod label updates at that scale. The last line of output is one JSON object
(``seconds`` is wall time; ``cpu_seconds`` the process CPU time, steadier on a busy machine;
``peak_rss_mb`` the process's peak RSS from the start of the timed part, inputs included, and
``input_rss_mb`` the RSS holding just the inputs). The memory of the compiler itself, above the
decoded input: ``above_input_peak_mb`` (peak RSS during the initial sync minus ``input_rss_mb``)
and ``above_input_retained_mb`` (RSS once the sync is done and its garbage collected, minus
``input_rss_mb``); with ``--tracemalloc``, also the Python heap the compiler allocated, at its
peak and retained (``traced_peak_mb``, ``traced_retained_mb``; tracing slows the run, so the
times of such a run are not comparable).

    python benchmarks/controller_scale.py [--namespaces N] [--nodes N] [--ops N] [--seed N]
                                          [--tracemalloc]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from typing import Any

from antrea.apis.controlplane.types import Kind
from antrea.controller.networkpolicy import Change, NetworkPolicyController

Obj = dict[str, Any]
CREATED = "2026-01-01T00:00:00Z"


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM), so generating the inputs doesn't count."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _peak_rss_mb(reset_done: bool) -> float:
    if reset_done:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Generator:
    def __init__(self, nodes: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes = [f"node{i}" for i in range(1, nodes + 1)]
        self.rv = 0

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _meta(self, name: str, namespace: str | None = None) -> Obj:
        self.rv += 1
        meta: Obj = {
            "name": name,
            "uid": self._uid(),
            "resourceVersion": str(self.rv),
            "creationTimestamp": CREATED,
        }
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    def namespace(self, name: str) -> Obj:
        meta = self._meta(name)
        meta["labels"] = {"app": name, "kubernetes.io/metadata.name": name}
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def pod(self, namespace: str, name: str, labels: dict[str, str]) -> Obj:
        meta = self._meta(name, namespace)
        meta["labels"] = labels
        node = self.rng.choice(self.nodes)
        ip = f"10.{self.rng.randrange(256)}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": node,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                "restartPolicy": "Always",
            },
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
        }

    def policy(self, namespace: str, name: str, app: str | None) -> Obj:
        meta = self._meta(name, namespace)
        meta["generation"] = 1
        spec: Obj
        if app is None:
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        else:
            selector = {"matchLabels": {app: f"scale-{app[-1]}"}}
            spec = {
                "podSelector": selector,
                "ingress": [{"from": [{"podSelector": selector}]}],
                "policyTypes": ["Ingress", "Egress"],
            }
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta,
            "spec": spec,
        }


def generate(namespaces: int, nodes: int, seed: int) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """The three initial lists, as an informer decodes them (one JSON document per kind)."""
    gen = _Generator(nodes, seed)
    ns_list: list[Obj] = []
    pods: list[Obj] = []
    policies: list[Obj] = []
    for i in range(namespaces):
        ns = f"test-ns-{i}"
        ns_list.append(gen.namespace(ns))
        for j in range(4):
            app = "app-1" if j < 2 else "app-2"
            pods.append(gen.pod(ns, f"pod-{j}", {app: f"scale-{app[-1]}"}))
        policies.append(gen.policy(ns, "default-deny-all", None))
        policies.append(gen.policy(ns, "np-1", "app-1"))
        policies.append(gen.policy(ns, "np-2", "app-2"))
    return _decoded(ns_list), _decoded(pods), _decoded(policies)


def load(
    controller: NetworkPolicyController, ns_list: list[Obj], pods: list[Obj], policies: list[Obj]
) -> None:
    """The initial lists into the controller, as one batch (namespaces, pods, policies)."""
    with controller.batch():
        for ns in ns_list:
            controller.add_namespace(ns)
        for pod in pods:
            controller.add_pod(pod)
        for np in policies:
            controller.add_network_policy(np)


def _decoded(items: list[Obj]) -> list[Obj]:
    """The items as the decoded JSON of a list response; the originals are dropped."""
    text = json.dumps({"items": items})
    items.clear()
    result: list[Obj] = json.loads(text)["items"]
    return result


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(
    namespaces: int, nodes: int = 1000, ops: int = 1000, seed: int = 1, trace: bool = False
) -> dict[str, Any]:
    ns_list, pods, policies = generate(namespaces, nodes, seed)
    gc.collect()
    input_rss = _rss_mb()
    if trace:
        tracemalloc.start()
    reset_done = _reset_peak_rss()
    controller = NetworkPolicyController()
    counts = {"changes": 0}

    def listener(change: Change) -> None:
        counts["changes"] += 1

    controller.subscribe(listener)

    start = time.perf_counter()
    cpu_start = time.process_time()
    load(controller, ns_list, pods, policies)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak_after_sync = _peak_rss_mb(reset_done)
    gc.collect()
    retained_rss = _rss_mb()
    traced: dict[str, float] = {}
    if trace:
        traced_now, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced = {
            "traced_peak_mb": round(traced_peak / 2**20, 1),
            "traced_retained_mb": round(traced_now / 2**20, 1),
        }

    store = controller.store
    result: dict[str, Any] = {
        "namespaces": namespaces,
        "pods": len(pods),
        "policies": len(policies),
        "nodes": nodes,
        "address_groups": store.count(Kind.ADDRESS_GROUP),
        "applied_to_groups": store.count(Kind.APPLIED_TO_GROUP),
        "internal_policies": store.count(Kind.NETWORK_POLICY),
        "changes": counts["changes"],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "input_rss_mb": round(input_rss, 1),
        "peak_rss_after_sync_mb": round(peak_after_sync, 1),
        "above_input_peak_mb": round(peak_after_sync - input_rss, 1),
        "above_input_retained_mb": round(retained_rss - input_rss, 1),
        **traced,
    }
    result["groups"] = result["address_groups"] + result["applied_to_groups"]

    # Single events at scale: new pods, then label flips moving existing pods between groups.
    gen = _Generator(nodes, seed + 1)
    rng = random.Random(seed + 2)
    add_ms: list[float] = []
    new_pods = [
        gen.pod(f"test-ns-{rng.randrange(namespaces)}", f"extra-{i}", {"app-1": "scale-1"})
        for i in range(ops)
    ]
    for pod in new_pods:
        t0 = time.perf_counter_ns()
        controller.add_pod(pod)
        add_ms.append((time.perf_counter_ns() - t0) / 1e6)
    update_ms: list[float] = []
    for i in range(ops):
        k = rng.randrange(len(pods))
        old = pods[k]
        labels = old["metadata"]["labels"]
        flipped = {"app-2": "scale-2"} if "app-1" in labels else {"app-1": "scale-1"}
        new = {**old, "metadata": {**old["metadata"], "labels": flipped}}
        new["metadata"]["resourceVersion"] = str(10_000_000 + i)
        t0 = time.perf_counter_ns()
        controller.update_pod(old, new)
        update_ms.append((time.perf_counter_ns() - t0) / 1e6)
        pods[k] = new
    result.update(
        pod_add_median_ms=round(statistics.median(add_ms), 4),
        pod_add_p99_ms=round(_percentile(add_ms, 0.99), 4),
        pod_update_median_ms=round(statistics.median(update_ms), 4),
        pod_update_p99_ms=round(_percentile(update_ms, 0.99), 4),
        peak_rss_mb=round(_peak_rss_mb(reset_done), 1),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=25_000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--ops", type=int, default=1000, help="single pod adds / updates timed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also report the traced Python heap of the sync (slower: times not comparable)",
    )
    args = parser.parse_args(argv)
    result = run(
        args.namespaces, nodes=args.nodes, ops=args.ops, seed=args.seed, trace=args.tracemalloc
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
