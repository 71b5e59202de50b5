"""Distribution cost at scale: the compiler's changes fanned out to one watcher per node.

Same cluster shape as ``controller_scale.py`` (upstream's TestInitXLargeScaleWithSmallNamespaces:
N namespaces x 4 pods x 3 policies, 1,000 nodes). After the initial computation, every node
connects (what happens after a controller failover): we time building all 1,000 snapshots
(encoded msgpack frames) and report their size. Then, with every node connected, we time single
pod label updates end to end on the controller side: compiler + per-node translation + frame
encoding + queueing (writers are simulated by draining the queues between events).

    python benchmarks/controller_distribution.py [--namespaces N] [--nodes N] [--ops N]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from antrea.controller.distribution import Dispatcher
from antrea.controller.networkpolicy import NetworkPolicyController


def _scale_module() -> Any:
    path = Path(__file__).with_name("controller_scale.py")
    spec = importlib.util.spec_from_file_location("controller_scale", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["controller_scale"] = module
    spec.loader.exec_module(module)
    return module


def run(namespaces: int, nodes: int, ops: int, seed: int = 1) -> dict[str, Any]:
    scale = _scale_module()
    ns_list, pods, policies = scale.generate(namespaces, nodes, seed)
    c = NetworkPolicyController()
    disp = Dispatcher(c.store, max_queue=1_000_000)
    c.subscribe(disp.on_change)
    t0 = time.perf_counter()
    scale.load(c, ns_list, pods, policies)
    compute_s = time.perf_counter() - t0
    gc.freeze()  # as antrea.controller.inputs does once the initial lists are computed

    node_names = sorted({p["spec"]["nodeName"] for p in pods})
    t0 = time.perf_counter()
    watchers = []
    snapshot_bytes = 0
    for n in node_names:
        w, frames = disp.register(n)
        watchers.append(w)
        snapshot_bytes += sum(len(f) for f in frames)
    snapshots_s = time.perf_counter() - t0

    rng = random.Random(seed + 2)
    update_ms: list[float] = []
    frames_per_update: list[int] = []
    for i in range(ops):
        k = rng.randrange(len(pods))
        old = pods[k]
        labels = old["metadata"]["labels"]
        flipped = {"app-2": "scale-2"} if "app-1" in labels else {"app-1": "scale-1"}
        new = {
            **old,
            "metadata": {
                **old["metadata"],
                "labels": flipped,
                "resourceVersion": str(10_000_000 + i),
            },
        }
        before = disp.stats.frames_queued
        t = time.perf_counter_ns()
        c.update_pod(old, new)
        update_ms.append((time.perf_counter_ns() - t) / 1e6)
        frames_per_update.append(disp.stats.frames_queued - before)
        pods[k] = new
        for w in watchers:
            w.queue.clear()
    ordered = sorted(update_ms)
    return {
        "namespaces": namespaces,
        "nodes": len(node_names),
        "compute_seconds": round(compute_s, 3),
        "snapshots_seconds": round(snapshots_s, 3),
        "snapshot_mb": round(snapshot_bytes / 1e6, 1),
        "pod_update_with_fanout_median_ms": round(statistics.median(update_ms), 4),
        "pod_update_with_fanout_p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 4),
        "frames_per_update_median": statistics.median(frames_per_update),
        "watchers_dropped": disp.stats.watchers_dropped,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--namespaces", type=int, default=25_000)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--ops", type=int, default=1000)
    args = p.parse_args(argv)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(json.dumps(run(args.namespaces, args.nodes, args.ops)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
