"""Antrea-native policies at scale: 1,000 ClusterNetworkPolicies x 10 rules over 5 tiers.

Usage (root): ``python benchmarks/acnp_scale.py [--policies 1000] [--rules-per-policy 10]``

1. **Realization**: the agent's code path (`NetworkPolicyController` + `PolicyReconciler` +
   `FlowClient` over the native OpenFlow transport) on a private userspace OVS bridge in a fresh
   network namespace (as `realize.py`). The compiled policies (what the controller sends: tier
   priority, policy priority, 10 ingress rules each with a random CIDR peer and an action among
   Allow/Drop/Reject, applied to 50 local pods) arrive as control-plane frames; the clock runs
   from the first frame to every flow installed. The installed count is checked with a dump.
2. **Insertion in the middle**: one more policy in the middle tier whose priority falls between
   two existing neighbours of that tier. Clock: from the ADDED event to the agent's batch done
   (flows in OVS). Reported: flows added / modified / deleted and bundles of that batch (a
   flow whose OpenFlow priority moves is deleted and added again: the priority is part of an
   OpenFlow flow's identity).

The last line is one JSON object: ``policies``, ``rules``, ``tiers``, ``seconds``, ``flows``,
``flows_in_ovs``, ``cpu_seconds``, ``insert_seconds``, ``insert_cpu_seconds``,
``insert_flows_added``, ``insert_flows_modified``, ``insert_flows_deleted``, ``insert_bundles``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realize
from project_env import use_project_venv

TIERS = (50, 100, 150, 200, 250)  # emergency, securityops, networkops, platform, application
TARGET_PODS = 50
ACTIONS = ("Allow", "Drop", "Reject")


def acnp(index: int, tier: int, prio: float, n_rules: int, rng: random.Random) -> Any:
    from antrea.apis.controlplane.types import (
        NetworkPolicy,
        NetworkPolicyReference,
        RuleAction,
    )
    from antrea.testbed.controlplane import IPBlock, ingress

    rules = tuple(
        dataclasses.replace(
            ingress(blocks=[IPBlock(realize.random_cidr(rng))]),
            name=f"r{j}",
            priority=j,
            action=RuleAction(rng.choice(ACTIONS)),
        )
        for j in range(n_rules)
    )
    uid = f"acnp-{index}"
    return NetworkPolicy(
        name=uid,
        source_ref=NetworkPolicyReference("AntreaClusterNetworkPolicy", "", f"p{index}", uid),
        rules=rules,
        applied_to_groups=(f"atg-{index % TARGET_PODS}",),
        generation=1,
        tier_priority=tier,
        priority=prio,
    )


def objects(n_policies: int, n_rules: int, seed: int = 13) -> tuple[list[Any], list[Any]]:
    """(AppliedToGroups + policies, the policies of the middle tier sorted by priority)."""
    from antrea.testbed.controlplane import AppliedToGroup, member

    rng = random.Random(seed)
    objs: list[Any] = [
        AppliedToGroup(f"atg-{p}", frozenset({member("bench", f"pod{p}", f"10.244.1.{p + 10}")}))
        for p in range(TARGET_PODS)
    ]
    policies = []
    for i in range(n_policies):
        tier = TIERS[i % len(TIERS)]
        policies.append(acnp(i, tier, float(1 + i // len(TIERS)), n_rules, rng))
    objs += policies
    middle = sorted(
        (p for p in policies if p.tier_priority == TIERS[len(TIERS) // 2]),
        key=lambda p: p.priority,
    )
    return objs, middle


async def measure(node: realize.Node, n_policies: int, n_rules: int) -> dict[str, Any]:
    from antrea.agent.controlplane_client import decode_chunk
    from antrea.agent.networkpolicy.controller import NetworkPolicyController
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.codec import FrameDecoder
    from antrea.apis.controlplane.types import PodReference
    from antrea.ovs.openflow.client import FlowClient
    from antrea.ovs.openflow.native import OpenFlowTransport
    from antrea.testbed.controlplane import added

    objs, middle = objects(n_policies, n_rules)
    data = realize.frames(objs)
    ofports = {PodReference("bench", f"pod{p}"): 100 + p for p in range(TARGET_PODS)}
    bridge = "br-acnp"
    target = node.add_bridge(bridge)
    try:
        transport = OpenFlowTransport(target)
        client = FlowClient(transport)
        rec = PolicyReconciler(
            client,
            round_num=1,
            ofport_of=ofports.get,
            gateway_ip="10.244.1.1",
            install_miss_flows=True,
        )
        ctl = NetworkPolicyController(node_name="bench", reconciler=rec)
        worker = asyncio.create_task(ctl.run(realize._never()))
        await asyncio.sleep(0)
        cpu0 = time.process_time()
        start = time.perf_counter()
        decoder = FrameDecoder()
        for i in range(0, len(data), 1 << 16):
            for ev in decode_chunk(decoder, data[i : i + (1 << 16)]):  # as the agent decodes
                ctl.handle(ev)
            await asyncio.sleep(0)
        await ctl.ready.wait()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        initial = ctl.last_batch
        failed = len(initial.failed) if initial else 0
        flows_before = set(map(str, client.installed()))
        # 2. one policy in the middle of the middle tier
        lo, hi = middle[len(middle) // 2 - 1], middle[len(middle) // 2]
        new = acnp(
            n_policies,
            TIERS[len(TIERS) // 2],
            (lo.priority + hi.priority) / 2,
            n_rules,
            random.Random(99),
        )
        prev = ctl.last_batch
        cpu1 = time.process_time()
        t0 = time.perf_counter()
        ctl.handle(added(new))
        while ctl.last_batch is prev:
            await asyncio.sleep(0.001)
        insert_seconds = time.perf_counter() - t0
        insert_cpu = time.process_time() - cpu1
        batch = ctl.last_batch
        assert batch is not None
        worker.cancel()
        await transport.close()
        installed = node.flow_count(bridge)
    finally:
        node.del_bridge(bridge)
    return {
        "policies": n_policies,
        "rules": n_policies * n_rules,
        "tiers": len(TIERS),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),  # the agent process (wall time depends on load)
        "flows": len(flows_before),
        "flows_in_ovs": installed,
        "rules_failed": failed,
        "insert_seconds": round(insert_seconds, 4),
        "insert_cpu_seconds": round(insert_cpu, 4),
        "insert_flows_added": batch.flows_added,
        "insert_flows_modified": batch.flows_modified,
        "insert_flows_deleted": batch.flows_deleted,
        "insert_bundles": batch.bundles,
        "clock": "control-plane frames arriving at the agent -> flows in OVS",
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="antrea-acnp-"))
    node = realize.Node(workdir)
    try:
        r = await measure(node, args.policies, args.rules_per_policy)
        print(
            f"{r['policies']} ACNPs x {args.rules_per_policy} rules over {r['tiers']} tiers: "
            f"{r['seconds']:.3f} s, {r['flows']} flows; insert in the middle: "
            f"{r['insert_seconds'] * 1000:.1f} ms, +{r['insert_flows_added']} "
            f"~{r['insert_flows_modified']} -{r['insert_flows_deleted']} flows "
            f"in {r['insert_bundles']} bundle(s)",
            file=sys.stderr,
        )
        return r
    finally:
        node.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    use_project_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--rules-per-policy", type=int, default=10)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
