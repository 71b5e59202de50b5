"""The agent's background-tasks health check: failed tasks count, finished one-shot ones don't."""

from __future__ import annotations

import asyncio

from antrea.agent.agent import Agent
from antrea.agent.config import AgentConfig


async def test_one_shot_tasks_that_returned_keep_the_agent_healthy() -> None:
    agent = Agent(AgentConfig(nodeName="n1"))

    async def once() -> None:
        return None

    async def forever() -> None:
        await asyncio.Event().wait()

    agent.add_task(once(), "round_cleanup")
    long_lived = agent.add_task(forever(), "node_watch")
    await asyncio.sleep(0.01)
    assert agent.operator_api.tasks_alive() is None
    long_lived.cancel()


async def test_a_failed_task_is_reported_by_name() -> None:
    agent = Agent(AgentConfig(nodeName="n1"))

    async def boom() -> None:
        raise RuntimeError("stream lost")

    agent.add_task(boom(), "networkpolicy_stream")
    await asyncio.sleep(0.01)
    assert agent.operator_api.tasks_alive() == "stopped: networkpolicy_stream"
