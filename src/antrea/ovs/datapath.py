"""Waiting until the datapath forwards by the current OpenFlow tables (`settle`).

ovs-vswitchd caches datapath flows (megaflows): each is the translation, through the tables of
its time, of the first packet that missed the cache, and it keeps forwarding packets that match
it until a revalidator thread has translated it again against the current tables. The
revalidators do that in rounds: a round reads the revalidation sequence (bumped on every table
change) when it begins and re-translates only the cached flows translated before that value.
``ovs-appctl revalidator/wait`` answers when the round in progress as it arrives ends, and that
round may have begun before the table change: it then leaves the flows it visits as they were,
and until the round after it ends, a new connection can still take a megaflow of the old tables
(a connection to a pod a policy has just isolated is let through).

A round that begins after a first wait has answered began after the change (the wait was
sent after the change was acknowledged; vswitchd bumps the sequence in the main-loop iteration
after the change, so the only exception is a round its timer starts within those microseconds),
so `settle` waits twice. Between the two, no round might be due for up to
``other_config:max-revalidator`` (500 ms by default): each wait is paired with a no-op flow
deletion (a cookie no flow carries; it changes no table, yet like every flow mod it bumps the
tables version, which starts a round at once), sent after the wait so that the round it starts
ends after the wait was registered. Cost: two ``ovs-appctl`` and two ``ovs-ofctl`` processes
and two revalidation rounds per call; measured (200 megaflows, load average 11): median
80-100 ms, against ~505 ms for the single wait, which almost always waited for the next tick
(docs/design/networkpolicy-agent.md, "Realized means enforced").
"""

from __future__ import annotations

import asyncio

from antrea.ovs.openflow.cookie import CATEGORY_SHIFT
from antrea.ovs.openflow.flow import FlowFilter
from antrea.ovs.ovsctl import OfCtl

# Category 0xff: no flow is ever installed under it (cookie.Category), so a delete of exactly
# this cookie matches nothing.
NO_FLOW = FlowFilter(cookie=0xFF << CATEGORY_SHIFT, cookie_mask=(1 << 64) - 1)


async def _kicked_wait(ofctl: OfCtl) -> None:
    waiter = asyncio.ensure_future(ofctl.appctl("revalidator/wait"))
    await asyncio.sleep(0)  # the wait's process is started first
    try:
        await ofctl.delete_flows(NO_FLOW)
    finally:
        await waiter


async def settle(ofctl: OfCtl) -> None:
    """Return once every datapath flow cached before the call has been revalidated against
    the tables as they are at the call: a revalidation round that began after the call has
    completed."""
    await _kicked_wait(ofctl)  # ends the round in progress (which may predate the change)
    await _kicked_wait(ofctl)  # a round that began after the first answer
    # Rounds are not enough: on the real-cluster noEncap lab (2026-12-07 CI) datapath flows
    # translated under an earlier table state kept forwarding after both rounds, seconds
    # later, and only `revalidator/purge` ended them (a forbidden egress kept connecting;
    # dropping every datapath flow made the same probe drop). Packets of live flows simply
    # miss once and are translated against the current tables.
    await ofctl.appctl("revalidator/purge")
