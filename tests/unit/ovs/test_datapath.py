"""`antrea.ovs.datapath.settle`: the order of its steps, with a recording stand-in for OfCtl.

The real-OVS tests (tests/integration/test_datapath_settle.py) prove the outcome: no datapath
flow of the old tables is left. What they cannot provoke is the race the first step exists for:
a revalidation round that began before the change writing a translation of the old tables into
the datapath after the purge. So the order is pinned here: the purge is sent only after a
``revalidator/wait`` has answered, and that wait was sent before the kick that starts a round.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from antrea.ovs import datapath
from antrea.ovs.openflow.flow import FlowFilter


class Recorder:
    """Records each command when sent and when answered; waits answer only when released."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.release = asyncio.Event()

    async def appctl(self, *args: str) -> str:
        cmd = " ".join(args)
        self.log.append(f"sent {cmd}")
        if cmd == "revalidator/wait":
            await self.release.wait()
        self.log.append(f"answered {cmd}")
        return ""

    async def delete_flows(self, flow_filter: FlowFilter) -> None:
        assert flow_filter == datapath.NO_FLOW
        self.log.append("kick")


@pytest.mark.asyncio
async def test_purge_follows_an_answered_wait_sent_before_the_kick() -> None:
    ofctl: Any = Recorder()
    task = asyncio.create_task(datapath.settle(ofctl))
    for _ in range(10):
        await asyncio.sleep(0)
    assert ofctl.log == ["sent revalidator/wait", "kick"], ofctl.log  # nothing purged yet
    ofctl.release.set()
    await task
    assert ofctl.log == [
        "sent revalidator/wait",
        "kick",
        "answered revalidator/wait",
        "sent revalidator/purge",
        "answered revalidator/purge",
    ]


@pytest.mark.asyncio
async def test_a_failed_kick_still_waits_then_raises() -> None:
    class FailingKick(Recorder):
        async def delete_flows(self, flow_filter: FlowFilter) -> None:
            self.release.set()
            raise RuntimeError("kick refused")

    ofctl: Any = FailingKick()
    with pytest.raises(RuntimeError, match="kick refused"):
        await datapath.settle(ofctl)
    assert "sent revalidator/purge" not in ofctl.log
    assert ofctl.log[-1] == "answered revalidator/wait"  # the wait was not left running
