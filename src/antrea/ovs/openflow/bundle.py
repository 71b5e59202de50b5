"""The one interface through which flow changes reach a switch.

`FlowTransport.bundle` applies a batch of adds, modifies and deletes as ONE atomic OpenFlow
bundle. Two implementations: `antrea.ovs.openflow.native.OpenFlowTransport` (the agent's
default: one held OpenFlow 1.5 connection, flow mods encoded in binary by `wire`) and
`OfctlBundleTransport` here (the fallback and reference), which pipes the rendered batch into a
single ``ovs-ofctl -O OpenFlow15 --bundle add-flows TARGET -`` process (never one process per
flow): each line carries its own operation, so mixed batches are one transaction. A batch with
group mods goes through ``ovs-ofctl bundle TARGET -`` instead (lines prefixed ``flow`` or
``group``), still one transaction.

Order inside a bundle: groups set (add-or-modify, so that flows may point at them), flow
deletes, modifies, adds, then group deletes (OVS removes the flows that still use a deleted
group).

A *streamed* bundle (`open_stream`) is the same one atomic bundle, opened before all of its
flows are known: `BundleStream.add` hands over adds as they become final (the native transport
sends them at once, so ovs-vswitchd parses them while the caller is still planning; every
other transport buffers them), `commit` sends the rest (deletes, modifies, adds) and commits,
`discard` drops it. Nothing is visible before the commit, and a refused commit leaves the
switch as it was, exactly as with `bundle`. The streamed adds must not share a key with the
commit's deletes or modifies (their order differs from `bundle`'s: streamed adds go first).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.render import render_bundle, render_mixed_bundle

log = structlog.get_logger(__name__)


class FlowTransport(Protocol):
    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        """Apply everything atomically or nothing (raises `BundleRejected`)."""


class BundleStream(Protocol):
    """One atomic bundle whose adds are handed over as they become final (see module doc)."""

    async def add(self, flows: Sequence[Flow]) -> None:
        """More adds for the bundle (not visible before `commit`)."""

    async def commit(
        self, *, add: Sequence[Flow] = (), modify: Sequence[Flow] = (), delete: Sequence[Flow] = ()
    ) -> None:
        """The rest of the bundle, then commit: all of it or nothing (raises `BundleRejected`,
        the bundle discarded)."""

    async def discard(self) -> None:
        """Drop the bundle and everything added to it."""


class BufferedStream:
    """A `BundleStream` over any `FlowTransport`: the adds are kept and sent with the rest, as
    one `bundle` call at `commit` (no streaming)."""

    def __init__(self, transport: FlowTransport) -> None:
        self.transport = transport
        self.staged: list[Flow] = []

    async def add(self, flows: Sequence[Flow]) -> None:
        self.staged.extend(flows)

    async def commit(
        self, *, add: Sequence[Flow] = (), modify: Sequence[Flow] = (), delete: Sequence[Flow] = ()
    ) -> None:
        staged, self.staged = self.staged, []
        await self.transport.bundle(add=[*staged, *add], modify=modify, delete=delete)

    async def discard(self) -> None:
        self.staged = []


def open_stream(transport: FlowTransport) -> BundleStream:
    """A streamed bundle on `transport`: its own (``transport.stream()``) when it has one, else
    a `BufferedStream`."""
    stream = getattr(transport, "stream", None)
    if callable(stream):
        opened: BundleStream = stream()
        return opened
    return BufferedStream(transport)


def mgmt_target(bridge: str, rundir: str | None = None) -> str:
    """The OpenFlow target for `ovs-ofctl`: the bridge's management socket in `rundir`."""
    rundir = rundir or os.environ.get("OVS_RUNDIR") or "/var/run/openvswitch"
    return f"unix:{rundir}/{bridge}.mgmt"


class OfctlBundleTransport:
    """Sends each batch as one `ovs-ofctl --bundle` transaction."""

    def __init__(self, target: str, *, ofctl: str = "ovs-ofctl") -> None:
        self.target = target
        self.ofctl = ofctl
        self.bundles_applied = 0
        self.last_duration_s = 0.0

    def stream(self) -> BundleStream:
        """A streamed bundle, buffered: one ``ovs-ofctl`` process at its commit."""
        return BufferedStream(self)

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        if not add and not modify and not delete and not set_groups and not delete_groups:
            return
        # --no-names: otherwise OpenFlow 1.5 ovs-ofctl fetches every port and table name
        # first (several extra round trips, ~4x the cost of a small bundle).
        if set_groups or delete_groups:
            doc = render_mixed_bundle(
                add=add,
                modify=modify,
                delete=delete,
                set_groups=set_groups,
                delete_groups=delete_groups,
            ).encode()
            argv = [self.ofctl, "-O", "OpenFlow15", "--no-names", "bundle", self.target, "-"]
        else:
            doc = render_bundle(add=add, modify=modify, delete=delete).encode()
            argv = [
                self.ofctl, "-O", "OpenFlow15", "--no-names", "--bundle", "add-flows",
                self.target, "-",
            ]  # fmt: skip
        start = time.perf_counter()
        # Spawned from a worker thread: subprocess uses vfork there, while the event loop's
        # spawn forks the whole agent and blocks the loop until the child has exec'd -- on a
        # busy node that stalled every CNI ADD in flight by tens of milliseconds.
        proc = await asyncio.to_thread(
            subprocess.run, argv, input=doc, capture_output=True, check=False
        )
        err = proc.stderr
        self.last_duration_s = time.perf_counter() - start
        if proc.returncode != 0:
            log.warning(
                "bundle_rejected",
                target=self.target,
                adds=len(add),
                mods=len(modify),
                dels=len(delete),
                stderr=err.decode(errors="replace").strip()[:2000],
            )
            raise BundleRejected(argv, proc.returncode, err.decode(errors="replace"))
        self.bundles_applied += 1
        log.debug(
            "bundle_applied",
            adds=len(add),
            mods=len(modify),
            dels=len(delete),
            ms=round(self.last_duration_s * 1000, 2),
        )
