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


ANTREA_CASES = caselib.antrea_cases()


@pytest.mark.parametrize("case", ANTREA_CASES, ids=[c.label for c in ANTREA_CASES])
def test_antrea_oracle_matches_case(case: caselib.Case) -> None:
    """Off the diagonal: the Antrea-native cases' loopback cells are not consistent (ignored)."""
    steps = simulate.expected_antrea_steps(case)
    for n, (step, got) in enumerate(zip(case.steps, steps, strict=True)):
        for e in step.expect:
            rows = got[(e.protocol, e.port)]
            for i, s in enumerate(caselib.ORDER):
                for j, d in enumerate(caselib.ORDER):
                    if s != d:
                        assert rows[i][j] == e.marks[(s, d)], f"step {n + 1} {e.protocol} {s}>{d}"


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_antrea_oracle_agrees_on_kubernetes_cases(case: caselib.Case) -> None:
    """With no Antrea-native object, the Antrea-native evaluator is the Kubernetes one."""
    assert simulate.expected_antrea_steps(case) == simulate.expected_steps(case)


def test_there_are_antrea_cases() -> None:
    assert len(ANTREA_CASES) >= 4
