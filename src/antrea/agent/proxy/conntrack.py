"""End the connections of a Service to an endpoint it no longer has (as kube-proxy does).

The conntrack entries of zone 65520 whose original destination is the Service's ClusterIP:port
and whose reply comes from the removed endpoint are flushed one by one by their full original
tuple (OVS before 3.3 flushes only exact tuples): the next packet of such a connection is new
again, finds no DNAT for it and the client learns at once that it is over. Other connections to
the same pod (direct, or through another Service) are kept. The dump is parsed and the tuples
rendered by `antrea.ovs` (`OfCtl.dump_conntrack`, `OfCtl.flush_conntrack`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import structlog

from antrea.ovs.openflow.flow import ConntrackEntry, ConntrackTuple

log = structlog.get_logger(__name__)

# (protocol, ClusterIP, port, endpoint IP, endpoint port)
Stale = tuple[str, str, int, str, int]


class Conntrack(Protocol):
    """What the flush needs of the switch (`antrea.ovs.ovsctl.OfCtl`)."""

    async def dump_conntrack(self, zone: int) -> list[ConntrackEntry]: ...

    async def flush_conntrack(self, zone: int, orig: ConntrackTuple) -> None: ...


def stale_tuples(entries: Iterable[ConntrackEntry], stale: set[Stale]) -> list[ConntrackTuple]:
    """The original tuples of the entries that belong to ``stale`` (sorted, each once)."""
    out = {
        e.orig
        for e in entries
        if (e.orig.proto, str(e.orig.dst), e.orig.dport, str(e.reply.src), e.reply.sport) in stale
    }
    return sorted(out, key=lambda t: (t.proto, t.src, t.dst, t.sport, t.dport))


async def flush_stale(ct: Conntrack, zone: int, stale: Iterable[Stale]) -> int:
    """Flush the entries of ``stale`` in ``zone``; the number flushed."""
    wanted = set(stale)
    if not wanted:
        return 0
    tuples = stale_tuples(await ct.dump_conntrack(zone), wanted)
    for t in tuples:
        await ct.flush_conntrack(zone, t)
    if tuples:
        log.info("service_connections_flushed", count=len(tuples))
    return len(tuples)
