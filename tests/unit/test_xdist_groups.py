"""tests/conftest.py's scheduler keeps each group in one worker, set up once.

xdist sends a worker the indexes of its tests in the collection the worker reported: the
order must be the worker's own. When only the controller sorted the groups by tier, every
worker ran the tests at those indexes of its unsorted list, and groups were split between
workers (the real clusters were set up two or three times in CI). Here a run of pytest-xdist
with that conftest over two modules whose tier order differs from their collection order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("xdist")

MODULE = """
import os
import pytest

@pytest.fixture(scope="module")
def fx(request):
    with open(os.environ["LOG"], "a") as f:
        f.write(f"setup {request.module.__name__} {os.environ['PYTEST_XDIST_WORKER']}\\n")
    yield

@pytest.mark.parametrize("i", range(N))
def test_x(fx, i):
    with open(os.environ["LOG"], "a") as f:
        f.write(f"run {__name__} {os.environ['PYTEST_XDIST_WORKER']}\\n")
"""


def test_every_group_runs_whole_in_one_worker_and_is_set_up_once(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).resolve().parents[1] / "conftest.py", tmp_path / "conftest.py")
    for rel, n in (("tests/unit/test_u.py", 6), ("tests/e2e/test_e.py", 3)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(MODULE.replace("range(N)", f"range({n})"))
    log = tmp_path / "log"
    # unit first on the command line: the e2e module (tier 2) must be moved before it (tier 4)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/unit/test_u.py", "tests/e2e/test_e.py",
         "-n", "2", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path)],
        cwd=tmp_path, env={**os.environ, "LOG": str(log)}, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split() for line in log.read_text().splitlines()]
    setups = Counter(module for what, module, _ in lines if what == "setup")
    assert setups == {"test_u": 1, "test_e": 1}, lines
    workers: dict[str, set[str]] = {}
    for what, module, worker in lines:
        if what == "run":
            workers.setdefault(module, set()).add(worker)
    assert all(len(w) == 1 for w in workers.values()), workers
