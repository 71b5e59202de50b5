"""The pipeline's own flows: table defaults, gw0 and tun0 (`BaseOwner` PIPELINE, GATEWAY, TUNNEL).

`BasePipeline` states them once at start, in the agent's one start-up bundle (next to the other
features' flows), under the typed owners of `antrea.agent.owners`; the flows themselves are
built by `antrea.agent.openflow.builder.FlowBuilder` from the layout of `openflow/pipeline.py`.
"""

from __future__ import annotations

from antrea.agent.openflow.builder import FlowBuilder
from antrea.agent.owners import BaseOwner
from antrea.ovs.openflow.client import Owner
from antrea.ovs.openflow.flow import Flow


class BasePipeline:
    def __init__(self, builder: FlowBuilder, *, encap: bool) -> None:
        self.builder = builder
        self.encap = encap

    def flows(self) -> dict[Owner, list[Flow]]:
        b = self.builder
        desired: dict[Owner, list[Flow]] = {
            BaseOwner.PIPELINE: b.pipeline_flows(),
            BaseOwner.GATEWAY: b.gateway_flows(),
        }
        if self.encap:
            desired[BaseOwner.TUNNEL] = b.tunnel_flows()
        return desired
