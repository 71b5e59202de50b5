"""The reference evaluator agrees with every shared (upstream-derived) case, diagonal included.

That is what allows it to write the expected matrices of our own cases.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "e2e" / "netpol"))
import caselib
import simulate

CASES = caselib.all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_oracle_matches_case(case: caselib.Case) -> None:
    for n, (step, got) in enumerate(zip(case.steps, simulate.expected_steps(case), strict=True)):
        for e in step.expect:
            want = [
                "".join("." if e.matrix[(s, d)] else "X" for d in caselib.ORDER)
                for s in caselib.ORDER
            ]
            assert got[(e.protocol, e.port)] == want, f"step {n + 1} {e.protocol}/{e.port}"


def test_there_are_cases() -> None:
    assert len(CASES) >= 10
