"""Test helpers for a running lab (used by tests/e2e and the conformance suite).

`lab_session(LabParams(...))` brings a lab up and always takes it down; `Lab` wraps the running
lab: API client, in-process probe, kubectl, `antrea lab` sub-commands, the e2e model. Shipped in
the package, like aiohttp's test_utils, so every test tree imports one implementation.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from antrea.testbed.lab import lifecycle, netns, state
from antrea.testbed.lab import model as labmodel
from antrea.testbed.lab.defaults import default_cni
from antrea.testbed.lab.external import record_namespaces
from antrea.testbed.lab.kube import KubeClient
from antrea.testbed.lab.probe import lab_targets, probe_matrix

KUBECTL = Path(sys.executable).parent / "kubectl"
_counter = itertools.count(1)


@dataclass(frozen=True)
class LabParams:
    nodes: int = 2
    cni: state.CniMode | None = None  # None: the lab default (antrea.testbed.lab.defaults)
    encap: state.EncapMode = "vxlan"


def need_lab_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("ovs-vswitchd", "ovsdb-server", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (bash bin/setup installs it)")


class Lab:
    """A running lab and the handful of things tests do with it."""

    def __init__(self, spec: state.LabSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.kubeconfig = spec.kubeconfig
        self.nodes = spec.node_names()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[KubeClient]:
        async with KubeClient.from_kubeconfig(self.kubeconfig) as c:
            yield c

    async def probe(
        self, *, protocol: str = "TCP", port: int = 80, namespaces: list[str] | None = None
    ) -> dict[str, Any]:
        """The `antrea lab probe -o json` document, computed in-process."""
        async with self.client() as c:
            targets = await lab_targets(self.spec, c, namespaces=namespaces)
        return await probe_matrix(targets, protocol=protocol, port=port)

    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        proc = subprocess.run(
            [str(KUBECTL), *args], env=self.env(), capture_output=True, text=True, input=input,
            timeout=60, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def antrea(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `antrea lab <args> --name <this lab>` as a user would."""
        argv = [sys.executable, "-m", "antrea.cmd.antrea", "lab", args[0], "--name", self.name]
        argv += args[1:]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"antrea lab {' '.join(args)} failed: {proc.stderr}")
        return proc

    def exec_pod(
        self, key: str, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.antrea("exec", key, "--", *argv, check=check)

    def exec_node(
        self, node: str, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.antrea("exec", node, "--", *argv, check=check)

    def restart_agent(self, node: str) -> int:
        return lifecycle.restart_agent(self.spec, node)

    def model(self) -> labmodel.Model:
        return labmodel.Model(nodes=self.nodes)

    async def create_model(self, m: labmodel.Model | None = None) -> labmodel.Model:
        m = m or self.model()
        async with self.client() as c:
            record_namespaces(self.spec.path, await labmodel.create(c, m))
            await labmodel.wait_running(c, m.keys, timeout=120)
        return m

    async def reset_model(self, m: labmodel.Model | None = None) -> None:
        m = m or self.model()
        async with self.client() as c:
            await labmodel.delete(c, m)


OWNER_FILE = "test-owner"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def sweep_stale_test_labs() -> list[str]:
    """Remove labs left by test processes that died without running their teardown."""
    removed = []
    for name in state.running_labs():
        owner = state.lab_root() / name / OWNER_FILE
        try:
            pid_text, started = owner.read_text().split()
        except (OSError, ValueError):
            continue
        pid = int(pid_text)
        if _start_time(pid) != started:  # the owner is gone (or its pid was reused)
            lifecycle.down(name)
            removed.append(name)
    return removed


@contextlib.contextmanager
def owned_lab(name: str, up: Callable[[], state.LabSpec]) -> Iterator[state.LabSpec]:
    """The lab `up()` brings up as ``name``, owned by this process (a later session sweeps it
    if this process dies) for the duration of the block; always downed, even on failure, and
    checked to leave no network namespace behind."""
    sweep_stale_test_labs()
    lifecycle.down(name)
    try:
        spec = up()
        me = os.getpid()
        (spec.path / OWNER_FILE).write_text(f"{me} {_start_time(me)}\n")
        yield spec
    finally:
        lifecycle.down(name)
        leftovers = netns.list_netns(state.netns_prefix(name))
        assert not leftovers, f"lab {name} left namespaces behind: {leftovers}"


@contextlib.contextmanager
def lab_session(params: LabParams = LabParams()) -> Iterator[Lab]:
    """A fresh lab for the duration of the block; always downed, even on failure."""
    need_lab_prerequisites()
    # The whole pid (base 36), so concurrent test processes never share a name.
    name = f"e2e{_base36(os.getpid())}n{next(_counter)}"
    cni = params.cni or default_cni()

    def up() -> state.LabSpec:
        return lifecycle.up(name=name, nodes=params.nodes, cni=cni, encap=params.encap)

    with owned_lab(name, up) as spec:
        yield Lab(spec)


def real_k8s_bin_or_skip(*, image: bool = False) -> str | None:
    """Where the Kubernetes binaries are (None: the PATH); skips (loudly) the calling test
    without root, the binaries ($ANTREA_K8S_BIN, the PATH, /opt/kubernetes/bin) or the host
    tools, or, with ``image``, without a way to get the antrea image."""
    import warnings

    from antrea.testbed.lab.realk8s import binaries
    from antrea.testbed.lab.realk8s import lifecycle as real

    if os.geteuid() != 0:
        pytest.skip("needs root")
    where = binaries.search_dir()
    missing = binaries.missing_kubernetes(where) + binaries.missing_host_tools()
    if missing:
        msg = (f"REAL KUBERNETES TESTS SKIPPED: missing {', '.join(missing)} (looked in "
               f"{where or 'the PATH'}; ${binaries.ENV_K8S_BIN}, else the PATH, else "
               f"{binaries.FALLBACK_K8S_BIN}; host tools: bash bin/setup)")  # fmt: skip
        warnings.warn(msg, stacklevel=2)
        pytest.skip(msg)
    if image and not os.environ.get(real.IMAGE_ARCHIVE_ENV) and real.checkout_root() is None:
        pytest.skip("REAL KUBERNETES TESTS SKIPPED: no antrea image (no bin/build-image)")
    return where


REAL_SETUP_TIMEOUT = 900.0
"""A real cluster's setup (up, then antrea installed) is bounded by this, not by the first
test's timeout: tests/conftest.py gives realk8s tests a timeout for their own call only
(``func_only``). Under CI load a setup took ~222 s of the 300 s per-test timeout."""


@contextlib.contextmanager
def bounded(what: str, seconds: float = REAL_SETUP_TIMEOUT) -> Iterator[None]:
    """Fail the block (`state.LabError`) if it takes longer than ``seconds`` (SIGALRM, as
    pytest-timeout's signal method; no bound outside the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise state.LabError(f"{what}: not done after {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def real_cluster(name: str, k8s_bin: str | None, *, nodes: int = 2) -> Iterator[state.LabSpec]:
    """A bare real-Kubernetes lab (no CNI) named ``name``, as `owned_lab`."""

    def up() -> state.LabSpec:
        with bounded(f"real cluster {name} up"):
            return lifecycle.up(name=name, nodes=nodes, kubernetes="real", k8s_bin=k8s_bin)

    with owned_lab(name, up) as spec:
        yield spec


def real_kubectl(k8s_bin: str | None) -> str:
    """The kubectl of the Kubernetes binaries in ``k8s_bin``, else the lab's."""
    from antrea.testbed.lab.realk8s import binaries

    return binaries.find(k8s_bin).kubectl or str(KUBECTL)


class RealCluster:
    """kubectl against a real-Kubernetes lab, and waiting for what it reports."""

    def __init__(
        self, spec: state.LabSpec, kubectl: str, *, timeout: float = 120.0, wait: float = 120.0
    ) -> None:
        self.spec = spec
        self.kubectl_bin = kubectl
        self.timeout = timeout
        self.wait_timeout = wait

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        proc = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.spec.kubeconfig}", *args],
            capture_output=True, text=True, input=input, timeout=self.timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait(
        self, what: str, predicate: Callable[[], object], timeout: float | None = None
    ) -> None:
        """Until ``predicate()`` is true (an assertion, key, value or type error counts as not
        yet); fails after ``timeout`` with the last error and the pods of every namespace."""
        timeout = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                if predicate():
                    return
            except (AssertionError, KeyError, ValueError, TypeError) as exc:
                last = exc
            if time.monotonic() > deadline:
                pods = self.kubectl("get", "pods", "-A", "-o", "wide", check=False)
                raise AssertionError(f"{what}: not after {timeout:.0f}s ({last!r})\n{pods}")
            time.sleep(1)


@contextlib.contextmanager
def real_lab_session(*, nodes: int = 2, encap_mode: str = "encap", tag: str = "r") -> Iterator[Lab]:
    """A real-Kubernetes lab with antrea applied from deploy/antrea.yml; always downed.

    Skips (loudly) without root, the Kubernetes binaries ($ANTREA_K8S_BIN, the PATH,
    /opt/kubernetes/bin) or the host tools, or without a way to get the antrea image.
    """
    from antrea.testbed.lab.realk8s import install

    where = real_k8s_bin_or_skip(image=True)
    name = f"{tag}{_base36(os.getpid())}n{next(_counter)}"[:12]
    with real_cluster(name, where, nodes=nodes) as spec:
        with bounded(f"antrea installed on {name}"):
            install.install(spec, real_kubectl(where), encap_mode=encap_mode)
        yield Lab(spec)
