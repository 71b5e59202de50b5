"""Fault figures for docs/reliability.md: traffic lost, seconds to converge, stale flows, leaks.

Usage (root): ``python benchmarks/faults.py [--runs 3] [--faults agent,vswitchd,...] [--keep]``

Brings up a private 2-node antrea lab, creates the `antrea.testbed.lab.chaos` workload
(src, other on node1; srv, free on node2; policy ``guard``) and runs each fault ``--runs``
times, probing every 20 ms (`antrea.testbed.lab.prober`: a TCP connect per path, 0.5 s timeout):

- ``agent``: SIGKILL node2's agent, switch the policy v1 -> v2 while it is down (3 s), the
  supervisor restarts it;
- ``vswitchd`` / ``ovsdb``: SIGKILL node2's ovs-vswitchd / ovsdb-server (the supervisor restarts
  it; the agent replays its flows into a restarted vswitchd);
- ``leader``: SIGKILL the daemon holding the controller Lease, down 3 s;
- ``apiserver``: `antrea lab restart-supervisor` (API server, kubelets, pod servers).

Per run: forbidden connections (allowed by neither policy version), failed attempts and the
outage on the cross-node path ``src->free:80`` and on ``other->srv:81`` (allowed by v2), seconds
from the component's return until each path connects for good, and for ``agent`` the stale
flows (cookies of an old round) once the new round is persisted. After all runs: leaks, i.e.
namespaces, veths, OVS ports and processes of the lab compared with before the faults.

Prints one JSON line per run, then a markdown table (median and max over the runs), then one
JSON line with everything. Removes the lab at the end (also on failure or Ctrl-C) unless
``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _reexec_in_venv() -> None:
    venv_python = REPO / ".venv" / "bin" / "python"
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve() and venv_python.exists():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])


def inventory(spec: Any) -> dict[str, int]:
    """What the lab holds now: namespaces, veths/ports in the nodes, processes in its netns."""
    from antrea.testbed.lab import netns, state, topology

    names = netns.list_netns(state.netns_prefix(spec.name))
    doc = {"netns": len(names)}
    links = ports = 0
    for node in spec.nodes:
        out = netns.run(["ip", "-n", node.netns, "-o", "link"]).stdout
        links += len(out.splitlines())
        ports += len(topology.vsctl(node, "list-ports", "br-int").split())
    doc["node_links"] = links
    doc["br_int_ports"] = ports
    pids = 0
    for name in names:
        out = netns.run(["ip", "netns", "pids", name], check=False).stdout
        pids += sum(1 for p in out.split() if topology.pid_alive(int(p)))
    doc["processes_in_lab_netns"] = pids
    return doc


def summarize(results: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| fault | runs | forbidden connections | cross-node attempts failed (20 ms each) "
        "| cross-node outage s | back after return s (cross-node / v2-allowed) | other |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["fault"], []).append(r)

    def mm(vals: list[float | None]) -> str:
        xs = [v for v in vals if v is not None]
        if len(xs) < len(vals):
            return "n/a"
        return f"{statistics.median(xs):g} / max {max(xs):g}"

    for fault, rs in by.items():
        cross = [r["src->free:80"] for r in rs]
        v2 = [r["other->srv:81"] for r in rs]
        extra = []
        if "stale_flows" in rs[0]:
            extra.append(f"stale flows {max(r['stale_flows'] for r in rs)}")
            extra.append(
                "v2 realized after return "
                + mm([r["policy_realized_after_return_s"] for r in rs])
                + " s"
            )
        if "survivor_disconnected_after_s" in rs[0]:
            extra.append(
                "controllerConnected false after "
                + mm([r["survivor_disconnected_after_s"] for r in rs])
                + " s, true again "
                + mm([r["survivor_reconnected_after_return_s"] for r in rs])
                + " s after return"
            )
        rows.append(
            f"| {fault} | {len(rs)} | {sum(r['forbidden_connections'] for r in rs)} "
            f"| {mm([c['failed'] for c in cross])} | {mm([c['outage_s'] for c in cross])} "
            f"| {mm([c['back_after_return_s'] for c in cross])} / "
            f"{mm([c['back_after_return_s'] for c in v2])} | {'; '.join(extra)} |"
        )
    return rows


def main() -> int:
    _reexec_in_venv()
    sys.path.insert(0, str(REPO / "src"))
    from antrea.testbed.lab import chaos, lifecycle
    from antrea.testbed.lab import model as labmodel
    from antrea.testbed.lab.kube import KubeClient
    from antrea.testbed.lab.testing import KUBECTL

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--faults", default=",".join(chaos.FAULTS))
    p.add_argument("--keep", action="store_true", help="leave the lab up (debugging)")
    args = p.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(chaos.FAULTS)
    if unknown:
        p.error(f"unknown faults {sorted(unknown)}; known: {', '.join(chaos.FAULTS)}")
    if os.geteuid() != 0:
        p.error("needs root")

    name = f"flt{os.getpid() % 10**8}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lifecycle.down(name)
    spec = lifecycle.up(name=name, nodes=2, cni="antrea")

    def kubectl(*a: str, check: bool = True, input: str | None = None) -> str:
        env = dict(os.environ, KUBECONFIG=str(spec.kubeconfig))
        proc = subprocess.run([str(KUBECTL), *a], env=env, capture_output=True, text=True,
                              input=input, timeout=60, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(a)}: {proc.stderr}")
        return proc.stdout

    results: list[dict[str, Any]] = []
    try:

        async def setup() -> Any:
            async with KubeClient.from_kubeconfig(spec.kubeconfig) as c:
                await chaos.create_workload(c, spec)
                keys = [f"{chaos.NS}/{n}" for n in ("src", "other", "srv", "free")]
                await labmodel.wait_running(c, keys, timeout=120)
                return await chaos.probe_paths(spec, c)

        paths = asyncio.run(setup())
        chaos.use_policy(kubectl, paths, 2)
        before = inventory(spec)
        arp_before = {ip: sorted(m) for ip, m in chaos.underlay_macs(spec).items()}
        for _ in range(args.runs):
            for f in faults:
                fig = chaos.FAULTS[f](spec, kubectl, paths).figures()
                print(json.dumps(fig), flush=True)
                results.append(fig)
        chaos.use_policy(kubectl, paths, 2)
        after = inventory(spec)
        arp_after = {ip: sorted(m) for ip, m in chaos.underlay_macs(spec).items()}
        rows = summarize(results)
        print("\n".join(rows))
        leaks = {k: after[k] - before[k] for k in before}
        print(
            json.dumps(
                {
                    "runs": results,
                    "inventory_before": before,
                    "inventory_after": after,
                    "leaks": leaks,
                    "underlay_arp_macs_before": arp_before,
                    "underlay_arp_macs_after": arp_after,
                }
            )
        )
    finally:
        if not args.keep:
            lifecycle.down(name)
        else:
            print(f"lab kept: antrea lab down --name {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
