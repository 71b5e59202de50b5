"""The flow round: which round this run's flows carry, and when the older rounds go.

Every cookie carries ``round | category | object`` (`antrea.ovs.openflow.cookie`). At start the
new round is one more than any round persisted (bridge ``external_ids:roundNum``) or present in
the cookies of the flows the switch holds, so a crashed predecessor's live flows are never
deleted up front (no gap): this run's adds overwrite them in place. Once policy is realized and
node routes are synced, the older rounds are deleted (cookie-masked ``del-flows``) and the round
is persisted. `FlowRounds` owns no flows of its own; it only deletes what older rounds left.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from antrea.agent.bridge import next_round, persist_round
from antrea.agent.config import AgentConfig
from antrea.ovs.errors import OvsError
from antrea.ovs.openflow.cookie import (
    Category,
    cookie_round,
    make_cookie,
    round_category_filter,
    round_filter,
)
from antrea.ovs.openflow.flow import FlowFilter
from antrea.ovs.openflow.render import render_filter
from antrea.ovs.ovsconfig import OvsdbClient
from antrea.ovs.ovsctl import OfCtl

log = structlog.get_logger(__name__)

NODE_ROUTES_SYNC_TIMEOUT = 30.0  # seconds the clean-up waits for the first Node sync at most


class FlowRounds:
    def __init__(self, cfg: AgentConfig, ovsdb: OvsdbClient, ofctl: OfCtl) -> None:
        self.cfg = cfg
        self.ovsdb = ovsdb
        self.ofctl = ofctl
        self.round_num = 0
        self.previous_rounds: set[int] = set()
        self.persisted = False

    def cookie(self, category: Category, object_id: int = 0) -> int:
        """A cookie of this run's round."""
        return make_cookie(self.round_num, category, object_id)

    async def select(self, persisted_round: int) -> int:
        """Pick the new round: above anything persisted or still installed (a crashed
        predecessor may have installed a round it never persisted; those flows are live, so
        they are not deleted now). Flows already carrying the new round (a wrap-around) go."""
        present = {cookie_round(f.cookie) for f in await self.ofctl.dump_flows(stats=False)}
        present.discard(0)
        self.round_num = next_round(max(present | {persisted_round}))
        self.previous_rounds = present - {self.round_num}
        await self.ofctl.delete_flows(round_filter(self.round_num))
        log.info("flow_round_selected", round=self.round_num, previous=sorted(self.previous_rounds))
        return self.round_num

    async def finish(
        self, policy_ready: asyncio.Event, routes_synced: asyncio.Event | None
    ) -> None:
        """Delete older rounds once everything is re-installed, then persist the round.

        If the policy realization is not ready in time, only the previous rounds' non-policy
        flows go (pod and node flows were all re-installed at start); their policy flows stay
        until the policy is realized, so a slow controller never opens isolated pods.
        """
        if routes_synced is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(routes_synced.wait(), NODE_ROUTES_SYNC_TIMEOUT)
        try:
            await asyncio.wait_for(policy_ready.wait(), self.cfg.policyReadyTimeout)
        except TimeoutError:
            log.warning("policy_not_ready_in_time", timeout=self.cfg.policyReadyTimeout)
            keep = {Category.NETWORK_POLICY}
            filters = [
                round_category_filter(r, c)
                for r in sorted(self.previous_rounds)
                for c in Category
                if c not in keep
            ]
            await self._delete_with_retry(filters)
            await policy_ready.wait()
        await self._delete_with_retry([round_filter(r) for r in sorted(self.previous_rounds)])
        log.info("stale_rounds_deleted", rounds=sorted(self.previous_rounds))
        self.previous_rounds.clear()
        while True:
            try:
                await persist_round(self.cfg, self.ovsdb, self.round_num)
                break
            except OvsError as exc:
                log.warning("round_persist_failed", error=str(exc))
                await asyncio.sleep(2)
        self.persisted = True
        log.info("flow_round_persisted", round=self.round_num)

    async def _delete_with_retry(self, filters: list[FlowFilter]) -> None:
        for flt in filters:
            while True:
                try:
                    await self.ofctl.delete_flows(flt)
                    break
                except OvsError as exc:
                    log.warning(
                        "stale_flows_delete_failed", filter=render_filter(flt), error=str(exc)
                    )
                    await asyncio.sleep(2)
