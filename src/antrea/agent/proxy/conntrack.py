"""End the connections of a Service to an endpoint it no longer has (as kube-proxy does).

The conntrack entries of zone 65520 whose original destination is the Service's ClusterIP:port
and whose reply comes from the removed endpoint are flushed one by one by their full original
tuple (OVS before 3.3 flushes only exact tuples): the next packet of such a connection is new
again, finds no DNAT for it and the client learns at once that it is over. Other connections to
the same pod (direct, or through another Service) are kept.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

import structlog

log = structlog.get_logger(__name__)

# (protocol, ClusterIP, port, endpoint IP, endpoint port)
Stale = tuple[str, str, int, str, int]
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
_ENTRY = re.compile(
    r"^(tcp|udp|sctp),orig=\(src=([\d.]+),dst=([\d.]+),sport=(\d+),dport=(\d+)\),"
    r"reply=\(src=([\d.]+),dst=[\d.]+,sport=(\d+),"
)


def stale_tuples(dump: str, stale: set[Stale]) -> list[str]:
    """The ``flush-conntrack`` tuples of the dumped entries that belong to ``stale``."""
    out = []
    for line in dump.splitlines():
        m = _ENTRY.match(line.strip())
        if m is None:
            continue
        proto, src, dst, sport, dport, rsrc, rsport = m.groups()
        if (proto, dst, int(dport), rsrc, int(rsport)) in stale:
            out.append(
                f"ct_nw_src={src},ct_nw_dst={dst},ct_nw_proto={PROTO_NUMBERS[proto]},"
                f"ct_tp_src={sport},ct_tp_dst={dport}"
            )
    return sorted(set(out))


async def flush_stale(
    appctl: Callable[..., Awaitable[str]], zone: int, stale: Iterable[Stale]
) -> int:
    """Flush the entries of ``stale`` in ``zone``; the number flushed."""
    wanted = set(stale)
    if not wanted:
        return 0
    dump = await appctl("dpctl/dump-conntrack", f"zone={zone}")
    tuples = stale_tuples(dump, wanted)
    for t in tuples:
        await appctl("dpctl/flush-conntrack", f"zone={zone}", t)
    if tuples:
        log.info("service_connections_flushed", count=len(tuples))
    return len(tuples)
