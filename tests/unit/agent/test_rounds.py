"""Round clean-up: older rounds go once policy is realized; a slow policy keeps its flows."""

from __future__ import annotations

import asyncio
from typing import Any

from antrea.agent.bridge import next_round
from antrea.agent.config import from_mapping
from antrea.agent.rounds import FlowRounds
from antrea.ovs.openflow.cookie import (
    Category,
    make_cookie,
    round_category_filter,
    round_filter,
)
from antrea.ovs.openflow.flow import FlowFilter
from antrea.ovs.openflow.render import render_filter
from antrea.ovs.ovsctl import DumpedFlow


class FakeOfctl:
    def __init__(self, cookies: tuple[int, ...] = ()) -> None:
        self.deleted: list[FlowFilter] = []
        self.cookies = cookies

    async def dump_flows(self, flow_filter: Any = None, *, stats: bool = True) -> list[Any]:
        return [
            DumpedFlow(table=0, priority=0, cookie=c, match="", actions="drop")
            for c in self.cookies
        ]

    async def delete_flows(self, flow_filter: FlowFilter) -> None:
        self.deleted.append(flow_filter)


class FakeOvsdb:
    def __init__(self) -> None:
        self.transactions: list[Any] = []

    async def transact(self, commands: Any, *, wait: bool = True) -> str:
        self.transactions.append([str(c) for c in commands])
        return ""


def rounds(timeout: float) -> tuple[FlowRounds, FakeOfctl, FakeOvsdb]:
    of, db = FakeOfctl(), FakeOvsdb()
    cfg = from_mapping({"nodeName": "n1", "policyReadyTimeout": timeout})
    r = FlowRounds(cfg, db, of)  # type: ignore[arg-type]
    r.round_num = 5
    r.previous_rounds = {4}
    return r, of, db


async def test_policy_ready_in_time_deletes_old_round_then_persists() -> None:
    r, of, db = rounds(5)
    ready = asyncio.Event()
    ready.set()
    await r.finish(ready, None)
    assert of.deleted == [round_filter(4)]
    assert db.transactions == [['set Bridge br-int external_ids:roundNum="5"']]
    assert r.persisted


async def test_slow_policy_keeps_old_policy_flows_until_ready() -> None:
    r, of, db = rounds(0.05)
    ready = asyncio.Event()
    task = asyncio.create_task(r.finish(ready, None))
    await asyncio.sleep(0.2)
    assert round_category_filter(4, Category.NETWORK_POLICY) not in of.deleted
    assert round_category_filter(4, Category.POD_CONNECTIVITY) in of.deleted
    assert round_filter(4) not in of.deleted and not r.persisted and db.transactions == []
    ready.set()
    await task
    assert of.deleted[-1] == round_filter(4) and r.persisted


async def test_new_round_is_above_persisted_and_installed_rounds_which_stay() -> None:
    """A crashed predecessor's unpersisted round 9 is live: the new round is 10, round 9 and
    the persisted 3 stay until the clean-up; only flows of the new round itself go now."""
    of = FakeOfctl(cookies=(make_cookie(9, Category.DEFAULT), make_cookie(3, Category.SERVICE), 0))
    r = FlowRounds(from_mapping({"nodeName": "n1"}), FakeOvsdb(), of)  # type: ignore[arg-type]
    assert await r.select(persisted_round=3) == 10
    assert r.previous_rounds == {3, 9} and of.deleted == [round_filter(10)]
    assert r.cookie(Category.SERVICE, 7) == make_cookie(10, Category.SERVICE, 7)


def test_round_filter_values_and_wraparound() -> None:
    assert render_filter(round_category_filter(4, Category.NETWORK_POLICY)) == (
        "cookie=0x4020000000000/0xffffff0000000000"
    )
    assert render_filter(round_filter(4)) == "cookie=0x4000000000000/0xffff000000000000"
    assert next_round(0) == 1 and next_round(0xFFFF) == 1
