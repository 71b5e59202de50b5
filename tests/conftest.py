"""Settings shared by every test directory.

Hypothesis: no per-example deadline and no "too slow" health check. CI and the shared development
machines are loaded (labs, OVS, compilers), and speed is measured in `benchmarks/`, never asserted
by a test's wall clock.

Parallel runs (`bin/test`: pytest-xdist, ``-n N``): every test belongs to one group, and a group
runs whole, in collection order, in one worker process (`group_of`):

- a test with an ``xdist_group`` mark is in that group: each conformance variant
  (tests/e2e/test_conformance.py) and each Service lab variant (tests/e2e/test_lab_proxy.py) is
  one, so its module-scoped lab is brought up once, in one worker;
- a test that runs a real Kubernetes cluster (the ``realk8s`` mark) is in the group its
  ``xdist_group`` mark names, which must start with ``realk8s`` (one cluster per group: the
  conformance variant's two halves, each mode of tests/e2e/test_realk8s_antrea.py), else in
  the group ``realk8s`` (with tests/integration/test_image.py). bin/test builds the image once
  before the parallel tier, so these groups only import it (bin/build-image writes dist/ and a
  shared cache, which concurrent builds would race on);
- any other test's group is its module, so module-scoped fixtures (labs, API servers) are set up
  once, as in a serial run.

The groups are scheduled heaviest first (real clusters, other lab variants, other e2e,
integration, unit). The scheduler is ours (`pytest_xdist_make_scheduler`): xdist's own
``--dist loadgroup`` no longer groups anything under pytest 9.2 (it rewrites a node id field that
pytest stopped reading). The controller has node ids only, no marks: each worker writes the group
of every test it collected to a file (`GROUPS_DIR`) that the controller reads before scheduling.
Each worker also puts its tests in that order itself (`pytest_collection_finish`): xdist sends a
worker the *indexes* of its tests in the collection the worker reported, so the order must be
the workers' own. (It used to be sorted in the controller only: every worker then ran the tests at
those indexes of its unsorted list, and no group stayed together: the real clusters were set up
twice or more, split between workers.)

``only_cases(ids)`` on a conformance variant keeps only those cases of it (the others are
deselected, not skipped): the real cluster's cases are split over two clusters that way.

`SERIAL` tests are timing-sensitive: marked ``serial`` here, bin/test runs them alone after the
parallel tier.

A ``realk8s`` test's timeout (300 s) covers its own call only (``func_only``): its cluster's setup
has its own bound (`antrea.testbed.lab.testing.REAL_SETUP_TIMEOUT`).

Workers never collide otherwise: labs are named per pid (`antrea.testbed.lab.testing`), the
agent test labs and the OVS sandboxes per uuid or tmp_path, and everything a lab runs lives in
its own namespaces. Without ``-n`` none of this applies but the ``serial`` mark.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "antrea",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("antrea")

REALK8S = "realk8s"
# Modules outside the realk8s mark that run in the group ``realk8s`` (they build images too).
REALK8S_MODULES = ("tests/integration/test_image.py",)
# Timing-sensitive tests (a prober's loss, a recovery bound, as a benchmark would measure): marked
# ``serial``, and bin/test runs them alone after the parallel tier, not beside five other labs.
SERIAL = (
    "tests/e2e/test_lab_chaos.py",
    "tests/e2e/test_podnetwork.py::test_agent_kill_keeps_connections_and_leaves_no_stale_flows",
    "tests/integration/test_agent_multinode.py::test_agent_kill_and_restart_keeps_connections",
)
GROUPS_DIR = "antrea_groups_dir"  # the workerinput key: where workers write their groups
GROUPS_DIR_KEY = pytest.StashKey[str]()


def group_of(item: pytest.Item) -> str:
    """The group a test runs in under xdist (see the module docstring)."""
    module = item.nodeid.split("::", 1)[0]
    named = {
        str(m.args[0] if m.args else m.kwargs["name"]) for m in item.iter_markers("xdist_group")
    }
    if item.get_closest_marker("realk8s") or module in REALK8S_MODULES:
        if len(named) > 1 or any(not n.startswith(REALK8S) for n in named):
            raise pytest.UsageError(
                f"{item.nodeid}: a realk8s test's xdist_group must be one name starting with "
                f"{REALK8S!r}: {sorted(named)}"
            )
        return named.pop() if named else REALK8S
    if len(named) > 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one xdist_group: {sorted(named)}")
    return named.pop() if named else module


def _tier(group: str) -> int:
    """Heaviest first: real clusters, lab variants, other e2e, integration, unit."""
    if group.startswith(REALK8S):
        return 0
    if not group.startswith("tests/"):
        return 1
    return 2 if group.startswith("tests/e2e/") else 3 if group.startswith("tests/integ") else 4


@pytest.hookimpl(tryfirst=True)
def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM to a pytest process (a cancelled CI job signals the whole process group; here
    ``pkill -f`` of a run, xdist workers included) ends it like Ctrl-C: pytest still tears the
    fixtures down, so the network namespaces, OVS daemons and veths they made are removed. By
    default SIGTERM killed the process on the spot and left them behind (a killed run left 11
    namespaces and two OVS instances). A SIGTERM to the xdist controller alone still ends the
    workers without their teardown: xdist stops them itself."""
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the `SERIAL` tests; in an xdist worker, write every test's group for the controller."""
    modules = {item.nodeid.split("::", 1)[0] for item in items}
    unmatched = {s for s in SERIAL if s.split("::", 1)[0] in modules}
    for item in items:
        for s in SERIAL:
            if item.nodeid == s or item.nodeid.startswith((f"{s}::", f"{s}[")):
                item.add_marker(pytest.mark.serial)
                unmatched.discard(s)
    if unmatched:
        raise pytest.UsageError(f"tests/conftest.py SERIAL names no test: {sorted(unmatched)}")
    for item in items:
        if item.get_closest_marker("realk8s") and not item.get_closest_marker("timeout"):
            # The cluster's setup has its own bound (testing.REAL_SETUP_TIMEOUT): the
            # per-test timeout covers the test's own call only.
            item.add_marker(pytest.mark.timeout(300, func_only=True))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        only = item.get_closest_marker("only_cases")
        callspec = getattr(item, "callspec", None)
        if only is None or callspec is None or "case" not in callspec.params:
            keep.append(item)
            continue
        case = callspec.params["case"]
        (keep if getattr(case, "id", case) in only.args[0] else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reports the collection to the controller
def pytest_collection_finish(session: pytest.Session) -> None:
    """In an xdist worker: order the tests by group tier (stable) and write their groups."""
    workerinput = getattr(session.config, "workerinput", None)
    if not (workerinput and workerinput.get(GROUPS_DIR)):
        return
    groups = {item.nodeid: group_of(item) for item in session.items}
    session.items.sort(key=lambda item: _tier(groups[item.nodeid]))
    path = Path(workerinput[GROUPS_DIR]) / f"{workerinput['workerid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.rename(path)


if importlib.util.find_spec("xdist") is not None:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no types
        """xdist's scope scheduling with the workers' groups as scopes, heaviest tiers first."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # keep our order, not xdist's by test count
            self.groups: dict[str, str] = {}

        def _split_scope(self, nodeid: str) -> str:
            return self.groups.get(nodeid) or nodeid.split("::", 1)[0]

        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed:
                node = next(iter(self.registered_collections))
                path = Path(self.config.stash[GROUPS_DIR_KEY]) / f"{node.gateway.id}.json"
                self.groups = json.loads(path.read_text())
                # The workers sorted their collections (pytest_collection_finish): xdist sends
                # indexes into them, so they are left as they are here.
            super().schedule()

    @pytest.hookimpl(tryfirst=True)  # before xdist's own, which always answers
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> GroupScheduling | None:
        if config.getvalue("dist") != "load":  # an explicit --dist: xdist's own scheduling
            return None
        return GroupScheduling(config, log)

    def pytest_configure_node(node: Any) -> None:
        """Tell each worker where to write its groups (one directory per run)."""
        stash = node.config.stash
        if GROUPS_DIR_KEY not in stash:
            stash[GROUPS_DIR_KEY] = tempfile.mkdtemp(prefix="antrea-xdist-groups-")
        node.workerinput[GROUPS_DIR] = stash[GROUPS_DIR_KEY]

    def pytest_unconfigure(config: pytest.Config) -> None:
        groups_dir = config.stash.get(GROUPS_DIR_KEY, None)
        if groups_dir:
            for p in Path(groups_dir).iterdir():
                p.unlink()
            os.rmdir(groups_dir)
