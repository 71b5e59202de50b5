"""Flow building without a switch: the Python half of NetworkPolicy realization, by stage.

Usage: ``.venv/bin/python benchmarks/flow_build.py [--rules 15000] [--repeat 7]`` (no root, no
OVS). Every stage is pure Python on one thread, so it is clocked in CPU seconds of this
process (`time.process_time`), which stays put on a loaded machine where wall time does not.
The policy set is `realize.py`'s (N ingress rules with one random CIDR peer each, 10 rules
per policy, 50 local target pods). Stages, each timed ``--repeat`` times (median reported):

- ``realize``: the objects handed to the agent's `NetworkPolicyController` until the initial
  batch is realized: rule cache, conjunction planning, flow values, `FlowClient` diff, on a
  transport that keeps the bundle and does nothing else;
- ``keys``: `Flow.key` of every flow of that bundle, from fresh copies (match values copied too,
  so nothing cached is reused), and a dict indexed by them (what the flow client does);
- ``render``: the ovs-ofctl ``add`` line of every flow (fresh copies);
- ``encode``: the OpenFlow 1.5 flow mod of every flow with a fresh `FlowEncoder` (fresh copies);
- ``frames``: the agent's side before planning, from `realize.py`'s wire frames: `FrameDecoder`
  (64 KiB chunks), the `RuleCache` filled event by event, and the batch flattened
  (`completed_many`), i.e. decode + cache + flatten (issue 12 goal: <= 0.12 s at 15,000 rules);
- ``plan``: the planner alone, from the flattened batch (made outside the clock) to the batch's
  desired flows: one `PolicyReconciler.reconcile` of every rule on a fresh reconciler whose
  flow client takes the owners' flows and diffs and sends nothing (plans, conjunction IDs,
  clause links, flow values; GC paused as the agent does for a large batch; match caches
  cleared as in a fresh agent; its teardown after the clock; issue 12 goal: <= 0.2 s at 15,000
  rules).

Ends with one JSON line: ``rules``, ``flows``, ``<stage>_median_s``, ``<stage>_runs_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realize import TARGET_PODS, frames, policy_objects


class KeepTransport:
    """A `FlowTransport` that only keeps what it is given."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    async def bundle(
        self,
        *,
        add: Sequence[Any] = (),
        modify: Sequence[Any] = (),
        delete: Sequence[Any] = (),
        set_groups: Sequence[Any] = (),
        delete_groups: Sequence[Any] = (),
    ) -> None:
        self.added.extend(add)


async def _never() -> AsyncIterator[Any]:
    await asyncio.Event().wait()
    yield None  # pragma: no cover


async def realize(objs: list[Any]) -> tuple[float, list[Any]]:
    from antrea.agent.networkpolicy import conjunctions
    from antrea.agent.networkpolicy.controller import NetworkPolicyController
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.types import PodReference
    from antrea.ovs.openflow.client import FlowClient
    from antrea.testbed.controlplane import BOOKMARK, added

    conjunctions.atom_match.cache_clear()  # each run pays for its matches, as a fresh agent
    conjunctions._block_prefixes.cache_clear()
    ofports = {PodReference("bench", f"pod{p}"): 100 + p for p in range(TARGET_PODS)}
    transport = KeepTransport()
    rec = PolicyReconciler(
        FlowClient(transport),
        round_num=1,
        ofport_of=ofports.get,
        gateway_ip="10.244.1.1",
        install_miss_flows=True,
    )
    ctl = NetworkPolicyController(node_name="bench", reconciler=rec)
    worker = asyncio.create_task(ctl.run(_never()))
    await asyncio.sleep(0)
    events = [added(o) for o in objs] + [BOOKMARK]
    start = time.process_time()
    for ev in events:
        ctl.handle(ev)
    await ctl.ready.wait()
    seconds = time.process_time() - start
    worker.cancel()
    return seconds, transport.added


def fresh(flows: list[Any]) -> list[Any]:
    from antrea.ovs.openflow.flow import Flow

    return [Flow(f.table, f.priority, replace(f.match), f.actions, f.cookie) for f in flows]


def _keys(batch: list[Any]) -> object:
    return {f.key: f for f in batch}


def _render(batch: list[Any]) -> object:
    from antrea.ovs.openflow.render import render_add

    return [render_add(f) for f in batch]


def _encode(batch: list[Any], enc: Any) -> object:
    from antrea.ovs.openflow.wire import FlowModCommand

    return [enc.flow_mod(f, FlowModCommand.ADD, 1) for f in batch]


def _frames(data: bytes) -> object:
    from antrea.agent.networkpolicy.controller import NetworkPolicyController
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.codec import FrameDecoder
    from antrea.ovs.openflow.client import FlowClient

    # the controller's handle() as the stream calls it (before BOOKMARK: nothing is planned)
    rec = PolicyReconciler(FlowClient(KeepTransport()), round_num=1, ofport_of=lambda _: None)
    ctl = NetworkPolicyController(node_name="bench", reconciler=rec)
    decoder = FrameDecoder()
    for i in range(0, len(data), 1 << 16):
        for ev in decoder.feed(data[i : i + (1 << 16)]):
            ctl.handle(ev)
    return ctl.cache.completed_many(ctl.cache.take_dirty())


def _plan(rules: dict[str, Any]) -> object:
    from antrea.agent.networkpolicy import conjunctions
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.types import PodReference
    from antrea.ovs.openflow.client import Desired, FlowClient, Plan

    class TakesFlows(FlowClient):
        """Takes the batch's desired flows; diffs and sends nothing."""

        async def stage(self, owners: Any) -> None:
            return None

        async def sync(self, desired: Desired) -> Plan:
            self.taken = desired
            return Plan()

    for cache in (conjunctions.atom_match, conjunctions._block_atoms, conjunctions._block_prefixes):
        cache.cache_clear()
    ofports = {PodReference("bench", f"pod{p}"): 100 + p for p in range(TARGET_PODS)}
    rec = PolicyReconciler(
        TakesFlows(KeepTransport()),
        round_num=1,
        ofport_of=ofports.get,
        gateway_ip="10.244.1.1",
        install_miss_flows=True,
    )
    gc.disable()
    try:
        asyncio.run(rec.reconcile(rules, with_base=True, absorb=dict))
        return rec
    finally:
        gc.enable()


def timed(fn: Callable[[], object], *, keep: bool = False) -> float:
    """CPU seconds of `fn()`; with `keep`, what it returns is freed after the clock stops (an
    agent keeps the state it builds: its teardown is not the stage's work)."""
    gc.collect()
    start = time.process_time()
    if keep:
        out = fn()
        seconds = time.process_time() - start
        del out
        return seconds
    fn()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=15000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    from antrea.apis.controlplane.codec import encode_event
    from antrea.ovs.openflow.wire import FlowEncoder
    from antrea.testbed.controlplane import BOOKMARK

    objs = policy_objects(args.rules)
    data = frames(objs)
    bookmark = encode_event(BOOKMARK)  # the frames stage stops before it
    runs: dict[str, list[float]] = {
        "realize": [],
        "keys": [],
        "render": [],
        "encode": [],
        "frames": [],
        "plan": [],
    }
    rules = _frames(data[: data.rfind(bookmark)])
    flows: list[Any] = []
    for _ in range(args.repeat):
        gc.collect()
        seconds, flows = asyncio.run(realize(objs))
        runs["realize"].append(seconds)

        batch = fresh(flows)
        runs["keys"].append(timed(partial(_keys, batch)))
        batch = fresh(flows)
        runs["render"].append(timed(partial(_render, batch)))
        batch = fresh(flows)
        runs["encode"].append(timed(partial(_encode, batch, FlowEncoder())))
        runs["frames"].append(timed(partial(_frames, data[: data.rfind(bookmark)])))
        runs["plan"].append(timed(partial(_plan, rules), keep=True))  # type: ignore[arg-type]
    report: dict[str, Any] = {"rules": args.rules, "flows": len(flows)}
    for stage, values in runs.items():
        report[f"{stage}_median_s"] = round(statistics.median(values), 4)
        report[f"{stage}_runs_s"] = [round(v, 4) for v in values]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
