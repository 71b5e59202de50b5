"""Waiting until the datapath forwards by the current OpenFlow tables (`settle`).

ovs-vswitchd caches datapath flows (megaflows): each is the translation, through the tables of
its time, of the first packet that missed the cache, and it keeps forwarding packets that match
it until a revalidator thread has translated it again against the current tables or it is
deleted. Revalidation alone did not suffice: on the real-cluster noEncap lab (CI, 2026-12-07)
datapath flows translated under an earlier table state kept letting a forbidden egress through
after two full revalidation rounds that began after the change, seconds later, and only
``ovs-appctl revalidator/purge`` ended them. So `settle` deletes every cached datapath flow
(the purge) once no revalidation that could still write a translation of the old tables is in
progress; every live flow then misses once and is translated against the current tables.

The purge deletes the flows ovs-vswitchd keeps a record (ukey) of, which is every flow it
installed; a datapath flow without one (left in the kernel datapath by an ovs-vswitchd that
restarted) is deleted by the first revalidation round that dumps it, whatever the tables. The
purge skips only the flows a revalidator holds at that moment, and it must not run while a
revalidation round that began before the change is still going: such a round may hold
translations of the old tables that it writes into the datapath after the purge (in the
userspace datapath a flow modification applies to whichever datapath flow matches its key,
which may be one cached anew after the purge); a round that began after the change translates
against the new tables, so the flows it holds are current. ``ovs-appctl
revalidator/wait`` answers when the round in progress as it arrives ends (or, with none in
progress, the next one), so the purge follows one such wait. A round might not be due for up to
``other_config:max-revalidator`` (500 ms by default), so the wait is paired with a no-op flow
deletion (a cookie no flow carries; it changes no table, yet like every flow mod it bumps the
tables version, which starts a round at once), sent after the wait so that the round it starts
ends after the wait was registered.

Cost (`benchmarks/settle.py`, 5,000 live megaflows through 10 tables, a change that makes all
of them stale, 3 runs of 10-12 calls; docs/design/networkpolicy-agent.md, "Realized means
enforced"): a median 0.08-0.14 s (0.05-0.10 s since `OfCtl.appctl` speaks the control socket
in process), against 0.10-0.20 s for the two waits and the purge this replaces, and
ovs-vswitchd spends 0.05-0.06 s more CPU than after revalidation alone, re-translating the
purged flows on their next packets.
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
    await asyncio.sleep(0)  # the wait goes out first (the kick starts an ovs-ofctl process)
    try:
        await ofctl.delete_flows(NO_FLOW)
    finally:
        await waiter


async def settle(ofctl: OfCtl) -> None:
    """Return once no datapath flow cached under the tables before the call is left: every
    datapath flow in place when this returns was translated against the tables as they are at
    the call (or later)."""
    await _kicked_wait(ofctl)  # ends the round in progress (which may predate the change)
    await ofctl.appctl("revalidator/purge")
