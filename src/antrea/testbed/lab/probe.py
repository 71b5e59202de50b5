"""Pod-to-pod connectivity matrix, probed from inside the source pods' namespaces.

For every ordered pair (from, to), including a pod to itself, a socket is created inside the
source pod's network namespace and connects to the destination pod's IP: TCP connect, or UDP
send and wait for the echo. A pair is connected when one of 3 tries succeeds within 1 s, the
way the upstream NetworkPolicy conformance tests probe. All pairs run concurrently (bounded),
so a fully blocked 9x9 matrix takes about 3 s.

Each pair also gets a verdict (``verdicts`` in the JSON, `R` in the table): ``connected``,
``rejected`` when no try connected and one was actively refused within the timeout (a TCP RST:
ECONNREFUSED; an ICMP destination-unreachable, e.g. the administratively-prohibited answer of a
Reject rule: ECONNREFUSED/EHOSTUNREACH/ENETUNREACH/EACCES on the socket), else ``dropped`` (no
answer).

Every try is a new connection, also to the datapath: its source port comes from a rotation over
the ephemeral range (``next_source_port``), so the same (source, destination, port) pair gets the
same 5-tuple again only after ~28,000 tries of this process. The kernel's own choice is random for
UDP, and a UDP probe that happened to reuse the 5-tuple of a recent allowed one would match that
conntrack entry (established) and pass a policy that now denies it: not a new connection at all.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import random
import socket
from dataclasses import dataclass
from typing import Any

from antrea.testbed.lab import netns

TRIES = 3
TIMEOUT = 1.0
CONCURRENCY = 128
CONNECTED, DROPPED, REJECTED = "connected", "dropped", "rejected"
# Errors that mean something answered "no" (TCP RST or ICMP unreachable), not silence.
_REFUSALS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM}
)


# The kernel's default ephemeral range (net.ipv4.ip_local_port_range), above the NodePort range.
SOURCE_PORTS = range(32768, 61000)
_draws = itertools.count(random.randrange(len(SOURCE_PORTS)))


def next_source_port() -> int:
    """The next source port of the rotation: a port comes back once every len(SOURCE_PORTS)
    draws, never sooner."""
    return SOURCE_PORTS[next(_draws) % len(SOURCE_PORTS)]


def _bind_fresh_port(sock: socket.socket) -> None:
    """Bind the probe's socket to the next free port of the rotation (a port still held by a
    socket of the namespace is skipped)."""
    for _ in range(64):
        try:
            sock.bind(("0.0.0.0", next_source_port()))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    sock.bind(("0.0.0.0", 0))


@dataclass(frozen=True, slots=True)
class Target:
    key: str  # "ns/name"
    netns_path: str
    ip: str


async def _try_once(src: Target, dst: Target, protocol: str, port: int) -> str:
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    sock = await netns.socket_in(src.netns_path, socket.AF_INET, kind)
    try:
        _bind_fresh_port(sock)
        async with asyncio.timeout(TIMEOUT):
            await loop.sock_connect(sock, (dst.ip, port))
            if protocol == "UDP":
                payload = f"probe {src.key}".encode()
                await loop.sock_sendall(sock, payload)
                reply = await loop.sock_recv(sock, 2048)
                return CONNECTED if reply == payload else DROPPED
            return CONNECTED
    except TimeoutError:
        return DROPPED
    except OSError as exc:
        return REJECTED if exc.errno in _REFUSALS else DROPPED
    finally:
        sock.close()


async def probe_pair_verdict(src: Target, dst: Target, *, protocol: str, port: int) -> str:
    """connected if a try connects, else rejected if a try was refused, else dropped."""
    seen: set[str] = set()
    for attempt in range(TRIES):
        outcome = await _try_once(src, dst, protocol, port)
        if outcome == CONNECTED:
            return CONNECTED
        seen.add(outcome)
        if attempt + 1 < TRIES:
            await asyncio.sleep(0.1)
    return REJECTED if REJECTED in seen else DROPPED


async def probe_pair(src: Target, dst: Target, *, protocol: str, port: int) -> bool:
    return await probe_pair_verdict(src, dst, protocol=protocol, port=port) == CONNECTED


async def probe_matrix(targets: list[Target], *, protocol: str, port: int) -> dict[str, Any]:
    """The JSON document of `antrea lab probe -o json`."""
    protocol = protocol.upper()
    if protocol not in ("TCP", "UDP"):
        raise ValueError(f"cannot probe {protocol}: only TCP and UDP (no SCTP in this kernel)")
    targets = sorted(targets, key=lambda t: t.key)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(src: Target, dst: Target) -> tuple[str, str, str]:
        async with gate:
            v = await probe_pair_verdict(src, dst, protocol=protocol, port=port)
            return src.key, dst.key, v

    results = await asyncio.gather(*(one(s, d) for s in targets for d in targets))
    verdicts: dict[str, dict[str, str]] = {t.key: {} for t in targets}
    for src_key, dst_key, v in results:
        verdicts[src_key][dst_key] = v
    return {
        "protocol": protocol,
        "port": port,
        "pods": [t.key for t in targets],
        "matrix": {s: {d: verdicts[s][d] == CONNECTED for d in verdicts} for s in verdicts},
        "verdicts": {s: {d: verdicts[s][d] for d in verdicts} for s in verdicts},
    }


def service_frontend(
    svc: dict[str, Any], port: int | None, protocol: str | None
) -> tuple[str, int, str]:
    """(ClusterIP, port, protocol) to probe: the given port (else the Service's first one)."""
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    if not ip or ip == "None":
        raise ValueError("the Service has no ClusterIP (headless or ExternalName)")
    ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
    chosen = next((p for p in ports if port is None or p.get("port") == port), None)
    if chosen is None:
        raise ValueError(f"the Service has no port {port}")
    proto = (protocol or str(chosen.get("protocol") or "TCP")).upper()
    return str(ip), int(chosen["port"]), proto


async def probe_service(
    sources: list[Target], service: str, ip: str, *, protocol: str, port: int
) -> dict[str, Any]:
    """The probe document with the Service (``ns/name`` at its ClusterIP) as the one column."""
    protocol = protocol.upper()
    if protocol not in ("TCP", "UDP"):
        raise ValueError(f"cannot probe {protocol}: only TCP and UDP (no SCTP in this kernel)")
    sources = sorted(sources, key=lambda t: t.key)
    dst = Target(service, "", ip)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(src: Target) -> tuple[str, str]:
        async with gate:
            return src.key, await probe_pair_verdict(src, dst, protocol=protocol, port=port)

    verdicts = dict(await asyncio.gather(*(one(s) for s in sources)))
    return {
        "protocol": protocol,
        "port": port,
        "pods": [t.key for t in sources],
        "columns": [service],
        "matrix": {s: {service: v == CONNECTED} for s, v in verdicts.items()},
        "verdicts": {s: {service: v} for s, v in verdicts.items()},
    }


def render_table(doc: dict[str, Any]) -> str:
    """Upstream's truth-table layout: rows are sources, columns destinations, `.` / `X` / `R`."""
    pods: list[str] = doc["pods"]
    columns: list[str] = doc.get("columns") or pods  # a Service probe: the Service only
    width = max([len(p) for p in pods + columns] + [4])
    lines = [
        f"{doc['protocol']}/{doc['port']}  "
        "(rows: from, columns: to; . connected, X dropped, R rejected)"
    ]
    lines.append(" " * width + " " + " ".join(p.rjust(width) for p in columns))
    verdicts = doc.get("verdicts") or {}
    for src in pods:
        row = doc["matrix"][src]
        vrow = verdicts.get(src) or {}
        cells = " ".join(
            ("." if row[dst] else "R" if vrow.get(dst) == REJECTED else "X").rjust(width)
            for dst in columns
        )
        lines.append(src.ljust(width) + " " + cells)
    return "\n".join(lines)


async def lab_targets(
    spec: Any, client: Any, *, namespaces: list[str] | None = None
) -> list[Target]:
    """Running pods with an IP (from the API), located through the lab's sandbox records.

    ``spec`` is a `LabSpec`, ``client`` a `KubeClient` (typed loosely to keep this module free of
    the lab's heavier imports for its pure users).
    """
    from antrea.testbed.lab import sandbox

    real = getattr(spec, "kubernetes", "embedded") == "real"
    boxes = {} if real else sandbox.load_all(spec)
    pods = (await client.list("/api/v1/pods")).get("items") or []
    out: list[Target] = []
    for pod in pods:
        md, st = pod.get("metadata") or {}, pod.get("status") or {}
        if namespaces and md.get("namespace") not in namespaces:
            continue
        if (pod.get("spec") or {}).get("hostNetwork") or md.get("deletionTimestamp"):
            continue
        if st.get("phase") != "Running" or not st.get("podIP"):
            continue
        if real:
            from antrea.testbed.lab.realk8s.node import cgroup_root
            from antrea.testbed.lab.realk8s.pods import pod_netns_path

            node = (pod.get("spec") or {}).get("nodeName") or ""
            path = pod_netns_path([cgroup_root(spec.name, node)], md.get("uid", ""))
        else:
            sb = boxes.get(md.get("uid", ""))
            path = None if sb is None else sb.netns_path
        if path is None:
            continue
        out.append(Target(key=f"{md['namespace']}/{md['name']}", netns_path=path, ip=st["podIP"]))
    return out
