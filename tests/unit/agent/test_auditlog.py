"""The NetworkPolicy audit log: one line per connection attempt, upstream's fields, rate limit,
rotation; frames parsed from real header layouts."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.auditlog import AuditLogger, PacketInfo, RuleInfo, parse_frame

RULE = RuleInfo(
    table="IngressDefaultRule",
    policy="K8sNetworkPolicy:x/deny-all",
    disposition="Drop",
    applied_to="x/a",
)


def tcp_syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
        bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))),
    )  # fmt: skip
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def udp6(sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + 3, 0) + b"abc"
    ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + b"\xfd" + b"\0" * 14 + b"\x01"
    ip6 += b"\xfd" + b"\0" * 14 + b"\x02"
    return b"\x02" * 12 + b"\x86\xdd" + ip6 + udp


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logger(tmp_path: Path, clock: Clock, **kw: Any) -> AuditLogger:
    return AuditLogger(
        tmp_path / "networkpolicy" / "np.log", clock=clock, wall=lambda: 1_780_000_000.5, **kw
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_parse_frames() -> None:
    pkt = parse_frame(tcp_syn("10.244.1.5", "10.244.2.7", 40412, 80))
    assert pkt == PacketInfo("10.244.1.5", "10.244.2.7", "TCP", 40412, 80, 40)
    assert parse_frame(udp6(5353, 53)) == PacketInfo("fd00::1", "fd00::2", "UDP", 5353, 53, 51)
    assert parse_frame(b"\x02" * 12 + b"\x08\x06" + b"\0" * 28) is None  # ARP


def test_one_line_per_connection_attempt(tmp_path: Path) -> None:
    """A dropped SYN and its retransmissions (1 s, then 2 s later) are one attempt; a new
    source port is a new attempt."""
    clock = Clock()
    log = logger(tmp_path, clock)
    first = parse_frame(tcp_syn("10.244.1.5", "10.244.2.7", 40412, 80))
    second = parse_frame(tcp_syn("10.244.1.5", "10.244.2.7", 40414, 80))
    assert first is not None and second is not None
    for dt in (0.0, 1.0, 2.0):
        clock.now += dt
        log.record(RULE, first)
        log.flush()
    log.record(RULE, second)
    assert lines(log.path) == []  # still aggregating
    clock.now += 2.5
    assert log.flush() == 2
    out = lines(log.path)
    assert out[0] == (
        "2026/05/28 20:26:40.500000 IngressDefaultRule K8sNetworkPolicy:x/deny-all <nil> Drop"
        " <nil> x/a 10.244.1.5 40412 10.244.2.7 80 TCP 40 <nil> [3 packets in 3s]"
    )
    assert " 40414 " in out[1] and out[1].endswith("[1 packets in 0s]")
    assert len(out) == 2


def test_rate_limit_and_rotation(tmp_path: Path) -> None:
    clock = Clock()
    log = logger(tmp_path, clock, rate=3, max_bytes=400, backups=2)
    for port in range(10):
        pkt = parse_frame(tcp_syn("10.0.0.1", "10.0.0.2", 30000 + port, 80))
        assert pkt is not None
        log.record(RULE, pkt)
    assert log.dropped == 7
    clock.now += 1.0
    for port in range(10, 20):
        pkt = parse_frame(tcp_syn("10.0.0.1", "10.0.0.2", 30000 + port, 80))
        assert pkt is not None
        log.record(RULE, pkt)
    log.flush(everything=True)
    log.close()
    assert log.lines == 6 and log.dropped == 14
    files = sorted(p.name for p in log.path.parent.iterdir())
    assert files == ["np.log", "np.log.1", "np.log.2"]  # rotated, two backups kept
    assert all(p.stat().st_size <= 400 for p in log.path.parent.iterdir())


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.0])),
        max_size=40,
    )
)
def test_lines_match_a_reference_model(arrivals: list[tuple[int, float]]) -> None:
    """Lines per 5-tuple = runs of its packets separated by gaps of at least `idle`."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        clock = Clock()
        log = AuditLogger(Path(d) / "np.log", clock=clock, idle=2.5, max_age=1e9)
        last: dict[int, float] = {}
        expected = 0
        for port, gap in arrivals:
            clock.now += gap
            if port not in last or clock.now - last[port] >= 2.5:
                expected += 1
            last[port] = clock.now
            pkt = parse_frame(tcp_syn("10.0.0.1", "10.0.0.2", 40000 + port, 80))
            assert pkt is not None
            log.record(RULE, pkt)
        log.flush(everything=True)
        log.close()
        assert log.lines == expected == len(lines(log.path))
