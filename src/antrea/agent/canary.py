"""The OVS canary: one flow whose absence means ovs-vswitchd lost the agent's tables.

`OvsCanary` owns `BaseOwner.CANARY` (a drop flow in table 250, installed in the start-up
bundle). It dumps that table every ``ovsCheckInterval`` seconds, and at once when the held
OpenFlow connection comes back (the native transport's ``on_reconnect``); when the flow is gone
it runs the replay (`antrea.agent.replay.FlowReplay`). Each answer of the switch counts as a
sign of life: ``readyz``'s ``ovs-connection`` check (`connected`) fails when none came for
max(3 x ``ovsCheckInterval``, 10 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from antrea.agent.openflow.builder import FlowBuilder
from antrea.agent.openflow.pipeline import CANARY_TABLE
from antrea.agent.owners import BaseOwner
from antrea.ovs.errors import OvsError
from antrea.ovs.openflow.client import Owner
from antrea.ovs.openflow.flow import Flow, FlowFilter
from antrea.ovs.ovsctl import OfCtl

log = structlog.get_logger(__name__)

SILENCE_FLOOR = 10.0  # seconds without an answer that readyz tolerates at least


class OvsCanary:
    def __init__(
        self, ofctl: OfCtl, *, interval: float, on_lost: Callable[[], Awaitable[None]]
    ) -> None:
        self.ofctl = ofctl
        self.interval = interval
        self.on_lost = on_lost
        self.armed = False  # set once the start-up bundle installed the canary
        self.seen_at: float | None = None  # last time the switch answered the check

    def flows(self, builder: FlowBuilder) -> dict[Owner, list[Flow]]:
        return {BaseOwner.CANARY: [builder.canary_flow()]}

    def arm(self) -> None:
        """The canary is installed: from now on its absence means the tables were lost."""
        self.armed = True
        self.seen_at = time.monotonic()

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> None:
        """Replay every flow if ovs-vswitchd lost them (the canary flow is gone)."""
        try:
            canary = await self.ofctl.dump_flows(FlowFilter(table=CANARY_TABLE), stats=False)
        except OvsError:
            return  # ovs-vswitchd down or restarting: check again later
        self.seen_at = time.monotonic()
        if not canary and self.armed:  # (before that, the start-up bundle installs everything)
            log.warning("ovs_flows_lost_replaying")
            try:
                await self.on_lost()
            except Exception as exc:
                log.warning("flow_replay_failed", error=repr(exc))

    def connected(self) -> str | None:
        """The ``ovs-connection`` health check: None when the switch answered recently."""
        if self.seen_at is None:
            return "not checked yet"
        age = time.monotonic() - self.seen_at
        if age > max(3 * self.interval, SILENCE_FLOOR):
            return f"ovs-vswitchd has not answered for {age:.0f}s"
        return None
