"""`testing.bounded`: a real cluster's setup has its own bound (not the first test's timeout)."""

from __future__ import annotations

import signal
import time

import pytest

from antrea.testbed.lab.state import LabError
from antrea.testbed.lab.testing import bounded


def test_a_setup_over_its_bound_fails_and_leaves_no_alarm() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(LabError, match="cluster up: not done after 0s"), bounded("cluster up", 0.2):
        time.sleep(5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == before
    with bounded("quick", 5):
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
