"""`antrea.testbed.lab.prober.Series` (when a path was back for good, its outage) and a real
`Prober` run against a local listener and a closed port."""

from __future__ import annotations

import os
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.testbed.lab.prober import Attempt, Path, Prober, Series


def series(oks: list[bool]) -> Series:
    return Series([Attempt(float(i), float(i) + 0.5, ok) for i, ok in enumerate(oks)])


def test_back_for_good_and_outage() -> None:
    s = series([True, False, False, True, False, True, True])
    assert s.back_for_good() == 5.0
    assert s.outage() == (1.0, 5.0)
    assert series([True, True]).outage() is None
    assert series([True, False]).back_for_good() is None
    assert series([]).back_for_good() is None


@given(st.lists(st.booleans(), max_size=40))
def test_back_for_good_is_the_start_of_the_trailing_successes(oks: list[bool]) -> None:
    s = series(oks)
    back = s.back_for_good()
    if not oks or not oks[-1]:
        assert back is None
        return
    assert back is not None
    i = int(back)
    assert all(oks[i:]) and (i == 0 or not oks[i - 1])


@pytest.mark.root
def test_prober_records_successes_and_failures() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
    me = f"/proc/{os.getpid()}/ns/net"  # setns into our own namespace: needs root
    paths = [
        Path("open", me, "127.0.0.1", listener.getsockname()[1]),
        Path("closed", me, "127.0.0.1", closed.getsockname()[1]),
    ]
    try:
        p = Prober(paths, interval=0.02).start()
        time.sleep(0.3)
        out = p.stop()
        p.stop()  # idempotent
    finally:
        listener.close()
        closed.close()
    assert len(out["open"].attempts) >= 5 and not out["open"].failures()
    assert out["closed"].attempts and not out["closed"].successes()
