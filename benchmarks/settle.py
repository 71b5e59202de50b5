"""What `antrea.ovs.datapath.settle` costs on a busy node, per variant of its steps.

Usage (root): ``python benchmarks/settle.py [--flows 2000] [--tables 10] [--rate 4000]
[--calls 12] [--variants rounds,rounds+purge,settle]``

A private userspace OVS in its own namespace, one bridge with two internal ports: a sender
thread keeps ``--flows`` megaflows alive (one per source address: each source is read by every
one of ``--tables`` tables, so each has its own megaflow) at ``--rate`` frames/s in total, and
a receiver thread counts what comes out. Per call: a policy-like change (the last table's flow
switches between two actions that both forward, so every cached megaflow is stale and must be
re-translated or dropped), then the variant's wait:

- ``rounds``: two kicked revalidation waits (`settle` before commit 332dc6a);
- ``rounds+purge``: the same, then ``revalidator/purge`` (`settle` as of 332dc6a);
- ``settle``: `settle` as it is (one kicked wait, then ``revalidator/purge``);
- ``purge``: ``revalidator/purge`` alone.

Per call it measures the wait's wall time, ovs-vswitchd's CPU seconds from the change until
``WINDOW`` s after it beyond the same window without a change (the revalidation rounds, and
after a purge the re-translation of every live flow on its next packet), and the frames lost in
that window. Prints one JSON line per variant (medians and max over the calls), then one JSON
line with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from project_env import use_project_venv

WINDOW = 1.5  # seconds from the change over which CPU and loss are counted
MARK = 4242  # UDP source port of the benchmark's frames


def frame(i: int) -> bytes:
    src = struct.pack("!I", (10 << 24) | (1 << 16) | i)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src, bytes([10, 2, 0, 1]))
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return eth + ip + struct.pack("!HHHH", MARK, 2000, 8, 0)


class Traffic:
    """A paced sender over every source and a counting receiver (two threads)."""

    def __init__(self, tx: socket.socket, rx: socket.socket, flows: int, rate: int) -> None:
        self.tx, self.rx = tx, rx
        self.frames = [frame(i) for i in range(flows)]
        self.rate = rate
        self.sent = self.received = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._recv)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _send(self) -> None:
        tick = 0.01
        per_tick = max(1, int(self.rate * tick))
        i, n = 0, len(self.frames)
        next_at = time.monotonic()
        while not self.stop.is_set():
            for _ in range(per_tick):
                try:
                    self.tx.send(self.frames[i % n])
                    self.sent += 1
                except OSError:
                    pass  # tap queue full: counted as lost
                i += 1
            next_at += tick
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _recv(self) -> None:
        self.rx.settimeout(0.1)
        mark = struct.pack("!H", MARK)
        while not self.stop.is_set():
            try:
                data = self.rx.recv(2048)
            except TimeoutError:
                continue
            if data[34:36] == mark:
                self.received += 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from antrea.ovs.datapath import _kicked_wait, settle
    from antrea.ovs.openflow.flow import Flow, GotoTable, LoadReg, Match, Move, Output, Proto
    from antrea.ovs.openflow.native import OpenFlowTransport
    from antrea.ovs.ovsctl import OfCtl
    from antrea.testbed.lab import netns as labnetns
    from antrea.testbed.ovssandbox import OvsSandbox

    name = f"antrea-settle-{uuid.uuid4().hex[:6]}"
    labnetns.add(name)
    workdir = Path(tempfile.mkdtemp(prefix="antrea-settle-"))
    ovs = OvsSandbox(rundir=workdir / "ovs", netns=name)
    transport: OpenFlowTransport | None = None
    traffic: Traffic | None = None
    try:
        ovs.start()
        ovs.vsctl(
            "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
            "protocols=OpenFlow15",
            "--", "add-port", "br0", "q1", "--", "set", "interface", "q1", "type=internal",
            "ofport_request=1",
            "--", "add-port", "br0", "q2", "--", "set", "interface", "q2", "type=internal",
            "ofport_request=2",
        )  # fmt: skip
        for dev in ("q1", "q2"):
            ovs.run(["ip", "link", "set", dev, "up"])
        pid = ovs.pids()[0]
        transport = OpenFlowTransport(ovs.ofctl_target("br0"))
        ofctl = OfCtl(ovs.ofctl_target("br0"), bridge="br0", rundir=str(ovs.rundir))
        last = args.tables - 1

        def table(t: int) -> Flow:
            read = (Move("NXM_OF_IP_SRC[]", f"NXM_NX_REG{t % 8}[]"),)
            return Flow(t, 10, Match(proto=Proto.IP), (*read, GotoTable(t + 1)))

        def forward(variant: int) -> Flow:
            return Flow(last, 10, Match(proto=Proto.IP), (LoadReg(8, variant), Output(2)))

        await transport.bundle(add=[table(t) for t in range(last)] + [forward(0)])

        def sockets() -> tuple[socket.socket, socket.socket]:
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind(("q1", 0))
            rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            rx.bind(("q2", 0))
            return tx, rx

        tx, rx = await labnetns.run_in(labnetns.netns_path(name), sockets)
        traffic = Traffic(tx, rx, args.flows, args.rate)
        traffic.start()
        await asyncio.sleep(2.0)  # every megaflow cached

        async def window(change: Any) -> tuple[float, float, int]:
            """(wait seconds, vswitchd CPU seconds, frames lost) of one window."""
            assert traffic is not None
            sent0, recv0, cpu0 = traffic.sent, traffic.received, cpu_seconds(pid)
            t0 = time.monotonic()
            wait = await change()
            await asyncio.sleep(max(0.0, t0 + WINDOW - time.monotonic()))
            await asyncio.sleep(0.05)  # frames in flight at the end of the window
            lost = (traffic.sent - sent0) - (traffic.received - recv0)
            return wait, cpu_seconds(pid) - cpu0, lost

        async def idle() -> float:
            return 0.0

        base = [await window(idle) for _ in range(4)]
        base_cpu = statistics.median(b[1] for b in base)
        base_lost = statistics.median(b[2] for b in base)

        async def purge() -> None:
            await ofctl.appctl("revalidator/purge")

        async def rounds() -> None:
            await _kicked_wait(ofctl)
            await _kicked_wait(ofctl)

        steps = {
            "rounds": [rounds],
            "rounds+purge": [rounds, purge],
            "settle": [lambda: settle(ofctl)],
            "purge": [purge],
        }
        results: dict[str, Any] = {}
        flip = 0
        for _ in range(args.calls):
            for variant in args.variants:

                async def change(variant: str = variant) -> float:
                    nonlocal flip
                    assert transport is not None
                    flip ^= 1
                    await transport.bundle(modify=[forward(flip)])
                    t = time.monotonic()
                    for step in steps[variant]:
                        await step()
                    return time.monotonic() - t

                results.setdefault(variant, []).append(await window(change))
        flows = len(
            (await ofctl.appctl("dpctl/dump-flows")).splitlines()
        )  # still cached at the end
        out: dict[str, Any] = {
            "flows": args.flows,
            "tables": args.tables,
            "rate": args.rate,
            "cached_at_end": flows,
            "idle_cpu_per_window": round(base_cpu, 3),
            "idle_lost_per_window": base_lost,
            "variants": {},
        }
        for variant, rows in results.items():
            waits = [r[0] for r in rows]
            extra = [r[1] - base_cpu for r in rows]
            lost = [r[2] for r in rows]
            doc = {
                "variant": variant,
                "calls": len(rows),
                "wait_median_s": round(statistics.median(waits), 4),
                "wait_max_s": round(max(waits), 4),
                "vswitchd_extra_cpu_median_s": round(statistics.median(extra), 4),
                "vswitchd_extra_cpu_max_s": round(max(extra), 4),
                "lost_median": statistics.median(lost),
                "lost_max": max(lost),
            }
            print(json.dumps(doc), flush=True)
            out["variants"][variant] = doc
        return out
    finally:
        if traffic is not None:
            traffic.close()
            traffic.tx.close()
            traffic.rx.close()
        if transport is not None:
            await transport.close()
        ovs.stop()
        labnetns.delete(name)


def main() -> int:
    use_project_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--rate", type=int, default=4000, help="frames/s over all flows")
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=["rounds", "rounds+purge", "settle", "purge"],
    )
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    if os.geteuid() != 0:
        print("needs root (network namespaces, OVS)", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(measure(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
