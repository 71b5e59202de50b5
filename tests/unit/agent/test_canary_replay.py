"""The OVS canary and the replay: a lost canary replays every flow, in the features' order."""

from __future__ import annotations

from typing import Any

from antrea.agent.canary import OvsCanary
from antrea.agent.openflow.pipeline import CANARY_TABLE
from antrea.agent.replay import FlowReplay
from antrea.ovs.errors import OfctlError
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.flow import Drop, Flow, FlowFilter, Match
from antrea.ovs.ovsctl import DumpedFlow
from antrea.testbed.openflow import RecordingTransport


class FakeOfctl:
    def __init__(self) -> None:
        self.canary = True
        self.down = False
        self.asked: list[FlowFilter | None] = []

    async def dump_flows(self, flow_filter: FlowFilter | None = None, *, stats: bool = True) -> Any:
        self.asked.append(flow_filter)
        if self.down:
            raise OfctlError(["ovs-ofctl"], 1, "connection refused")
        flow = DumpedFlow(table=CANARY_TABLE, priority=0, cookie=1, match="", actions="drop")
        return [flow] if self.canary else []


def canary() -> tuple[OvsCanary, FakeOfctl, list[str]]:
    of, lost = FakeOfctl(), list[str]()

    async def on_lost() -> None:
        lost.append("replay")

    return OvsCanary(of, interval=2, on_lost=on_lost), of, lost  # type: ignore[arg-type]


async def test_a_missing_canary_replays_only_once_armed() -> None:
    c, of, lost = canary()
    of.canary = False
    await c.check()  # the start-up bundle is not sent yet: nothing to replay
    assert lost == [] and of.asked == [FlowFilter(table=CANARY_TABLE)]
    c.arm()
    await c.check()
    assert lost == ["replay"]
    of.canary = True
    await c.check()
    assert lost == ["replay"]


async def test_health_follows_the_switch_answers() -> None:
    c, of, _ = canary()
    assert c.connected() == "not checked yet"
    of.down = True
    await c.check()
    assert c.connected() == "not checked yet"
    of.down = False
    await c.check()
    assert c.connected() is None
    assert c.seen_at is not None
    c.seen_at -= 60  # no answer for a minute (3 x 2 s and 10 s are the bounds)
    assert (c.connected() or "").startswith("ovs-vswitchd has not answered for 60")


async def test_replay_runs_before_steps_then_every_flow_then_after_steps() -> None:
    rt = RecordingTransport()
    client = FlowClient(rt)
    flow = Flow(CANARY_TABLE, 0, Match(), (Drop(),), 1)
    await client.sync({"canary": [flow]})
    order: list[str] = []

    class Ovsdb:
        async def transact(self, commands: Any, *, wait: bool = True) -> str:
            order.append(f"ovsdb:{len(rt.bundles)}")
            return ""

    replay = FlowReplay(client, Ovsdb())  # type: ignore[arg-type]

    async def step(name: str) -> None:
        order.append(f"{name}:{len(rt.bundles)}")

    replay.before += [lambda: step("bridge"), lambda: step("groups")]
    replay.after.append(lambda: step("routes"))
    await replay.run()
    # the flows went out as one more bundle, after the before steps and before the routes
    assert order == ["bridge:1", "groups:1", "ovsdb:2", "routes:2"]
    assert rt.bundles[-1] and replay.count == 1
