"""Our plugin and the reference plugins (Debian's bridge + host-local) give the same error codes.

Both are driven the way a runtime drives them (environment + config on stdin) on identical
inputs; only the plugin-specific part of the config differs (``type``, the bridge's settings).
Every case fails during validation, so the reference never touches the network. Ours runs as
both executables: the Python ``antrea-cni`` with no agent at all (any case that got past its
validation would answer 11 and fail the comparison), and the C shim, which forwards everything
to the agent's CNI front end (here with no pod side: a case that got past validation would
fail with 999).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from antrea.agent.cniserver.install import install_plugin, install_python_plugin
from antrea.agent.cniserver.server import CNIServer

pytestmark = pytest.mark.root

REF_DIR = Path("/usr/lib/cni")
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/antrea-cni-ref-none",
    "CNI_IFNAME": "eth0",
    # libcni 1.1.1's skel wants CNI_PATH for ADD/DEL/CHECK although the spec makes it optional.
    "CNI_PATH": str(REF_DIR),
}


def _ours(version: Any, socket: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": "test",
        "type": "antrea",
        "ipam": {"type": "host-local"},
        "cniSocket": socket,
    }


def _reference(version: Any, tmp: Path) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": "test",
        "type": "bridge",
        "bridge": "cni-reftest0",
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": str(tmp / "hl")},
    }


# (id, env overrides (None removes), config change or raw stdin, expected code)
CASES: list[tuple[str, dict[str, str | None], dict[str, Any] | bytes, int]] = [
    ("missing-containerid", {"CNI_CONTAINERID": None}, {}, 4),
    ("missing-netns-add", {"CNI_NETNS": None}, {}, 4),
    ("missing-ifname-del", {"CNI_COMMAND": "DEL", "CNI_IFNAME": None}, {}, 4),
    ("missing-netns-check", {"CNI_COMMAND": "CHECK", "CNI_NETNS": None}, {}, 4),
    ("unknown-command", {"CNI_COMMAND": "FOO"}, {}, 4),
    ("lowercase-command", {"CNI_COMMAND": "add"}, {}, 4),
    ("containerid-slash", {"CNI_CONTAINERID": "bad/id"}, {}, 4),
    ("containerid-dash", {"CNI_CONTAINERID": "-abc"}, {}, 4),
    ("ifname-slash", {"CNI_IFNAME": "et/h0"}, {}, 4),
    ("ifname-dot", {"CNI_IFNAME": "."}, {}, 4),
    ("ifname-too-long", {"CNI_IFNAME": "x" * 16}, {}, 4),
    ("empty-ifname", {"CNI_IFNAME": ""}, {}, 4),
    ("bad-json", {}, b"{not json", 6),
    ("empty-stdin", {}, b"", 6),
    ("json-array", {}, b"[1]", 6),
    ("version-not-string", {}, {"cniVersion": 1}, 6),
    ("unknown-version-add", {}, {"cniVersion": "9.9.9"}, 1),
    ("unknown-version-del", {"CNI_COMMAND": "DEL"}, {"cniVersion": "9.9.9"}, 1),
    ("check-in-0.3.1", {"CNI_COMMAND": "CHECK"}, {"cniVersion": "0.3.1"}, 1),
    ("network-name-slash", {}, {"name": "test/net"}, 7),
    ("missing-network-name", {}, {"name": None}, 7),
]


def _run(exe: Path, env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([exe], env=env, input=stdin, capture_output=True, timeout=30, check=False)
    assert proc.returncode != 0, f"{exe.name} succeeded: {proc.stdout!r}"
    doc = json.loads(proc.stdout)  # an error that is not the spec's JSON is a protocol violation
    assert isinstance(doc["msg"], str)
    return proc.returncode, doc


@pytest.fixture(scope="module", params=["c", "python"])
def ours(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """(executable, the cniSocket to configure)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access(REF_DIR / "bridge", os.X_OK):
        pytest.skip("needs the reference CNI plugins (containernetworking-plugins)")
    if request.param == "python":
        yield install_python_plugin(tmp_path_factory.mktemp("bin")), "/tmp/antrea-no-agent.sock"
        return
    socket = f"/tmp/antrea-cni-ref-{os.getpid()}.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def up() -> CNIServer:
        ready = asyncio.Event()
        ready.set()
        server = CNIServer(socket_path=socket, pods=None, ready=ready)  # type: ignore[arg-type]
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(up(), loop).result(10)
    try:
        yield install_plugin(tmp_path_factory.mktemp("bin"), socket=socket), socket
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if os.path.exists(socket):
            os.unlink(socket)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_error_code_as_reference(ours, tmp_path, case):
    _, env_change, change, code = case
    env = {k: v for k, v in {**ENV, **env_change}.items() if v is not None}
    stdins = []
    exe, socket = ours
    for build in (lambda v: _ours(v, socket), lambda v: _reference(v, tmp_path)):
        if isinstance(change, bytes):
            stdins.append(change)
            continue
        conf = build(change.get("cniVersion", "1.0.0"))
        for key, value in change.items():
            if value is None:
                conf.pop(key)
            else:
                conf[key] = value
        stdins.append(json.dumps(conf).encode())
    _, mine = _run(exe, env, stdins[0])
    _, ref = _run(REF_DIR / "bridge", env, stdins[1])
    assert (mine["code"], ref["code"]) == (code, code), (mine, ref)
    assert not (tmp_path / "hl").exists()  # the reference never got as far as allocating


def test_version_lists_agree_on_the_common_versions(ours):
    outs = []
    for exe in (ours[0], REF_DIR / "bridge"):
        proc = subprocess.run(
            [exe], env={"CNI_COMMAND": "VERSION"}, input=b'{"cniVersion":"1.0.0"}',
            capture_output=True, check=True,
        )  # fmt: skip
        outs.append(set(json.loads(proc.stdout)["supportedVersions"]))
    assert {"0.3.0", "0.3.1", "0.4.0", "1.0.0"} <= outs[0] & outs[1]
