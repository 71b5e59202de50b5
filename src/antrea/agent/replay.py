"""Replay after ovs-vswitchd lost its tables (a restart, a ``del-flows``): everything again.

`FlowReplay.run` re-states, in order: the steps registered in ``before`` (the bridge
transaction and gw0, `HostNetwork.replay`; the flows of pods whose ofport changed,
`LocalPods.replay`; AntreaProxy's groups, which the replayed flows point at), then every flow
the `FlowClient` holds in one bundle, clears ``flow-restore-wait``, then the ``after`` steps
(host routes to other nodes). The features register their steps as they start; the canary
(`antrea.agent.canary`) runs the replay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from antrea.agent.bridge import flow_restore_complete
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.ovsconfig import OvsdbClient

log = structlog.get_logger(__name__)

Step = Callable[[], Awaitable[object]]


class FlowReplay:
    def __init__(self, flow_client: FlowClient, ovsdb: OvsdbClient) -> None:
        self.flow_client = flow_client
        self.ovsdb = ovsdb
        self.before: list[Step] = []  # what the flows need in the switch first
        self.after: list[Step] = []  # what needs the flows back
        self.count = 0  # replays done (agentinfo flowReplays)

    async def run(self) -> None:
        for step in self.before:
            await step()
        n = await self.flow_client.replay()
        await flow_restore_complete(self.ovsdb)
        self.count += 1
        for step in self.after:
            await step()
        log.info("flows_replayed", flows=n)
