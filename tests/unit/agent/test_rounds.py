"""Round clean-up: older rounds go once policy is realized; a slow policy keeps its flows."""

from __future__ import annotations

import asyncio
from typing import Any

from antrea.agent.agent import Agent
from antrea.agent.bridge import next_round
from antrea.agent.config import from_mapping
from antrea.ovs.openflow.cookie import Category, round_category_filter, round_filter
from antrea.ovs.openflow.flow import FlowFilter
from antrea.ovs.openflow.render import render_filter


class FakeOfctl:
    def __init__(self) -> None:
        self.deleted: list[FlowFilter] = []

    async def delete_flows(self, flow_filter: FlowFilter) -> None:
        self.deleted.append(flow_filter)


class FakeOvsdb:
    def __init__(self) -> None:
        self.transactions: list[Any] = []

    async def transact(self, commands: Any, *, wait: bool = True) -> str:
        self.transactions.append([str(c) for c in commands])
        return ""


def agent(timeout: float) -> tuple[Agent, FakeOfctl, FakeOvsdb]:
    a = Agent(from_mapping({"nodeName": "n1", "policyReadyTimeout": timeout}))
    of, db = FakeOfctl(), FakeOvsdb()
    a.ofctl = of  # type: ignore[assignment]
    a.ovsdb = db  # type: ignore[assignment]
    a.round_num = 5
    a.previous_rounds = {4}
    return a, of, db


async def test_policy_ready_in_time_deletes_old_round_then_persists() -> None:
    a, of, db = agent(5)
    a.policy_ready.set()
    await a._finish_round()
    assert of.deleted == [round_filter(4)]
    assert db.transactions == [['set Bridge br-int external_ids:roundNum="5"']]
    assert a.round_persisted


async def test_slow_policy_keeps_old_policy_flows_until_ready() -> None:
    a, of, db = agent(0.05)
    task = asyncio.create_task(a._finish_round())
    await asyncio.sleep(0.2)
    assert round_category_filter(4, Category.NETWORK_POLICY) not in of.deleted
    assert round_category_filter(4, Category.POD_CONNECTIVITY) in of.deleted
    assert round_filter(4) not in of.deleted and not a.round_persisted and db.transactions == []
    a.policy_ready.set()
    await task
    assert of.deleted[-1] == round_filter(4) and a.round_persisted


def test_round_filter_values_and_wraparound() -> None:
    assert render_filter(round_category_filter(4, Category.NETWORK_POLICY)) == (
        "cookie=0x4020000000000/0xffffff0000000000"
    )
    assert render_filter(round_filter(4)) == "cookie=0x4000000000000/0xffff000000000000"
    assert next_round(0) == 1 and next_round(0xFFFF) == 1
