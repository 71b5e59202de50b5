"""No input makes either executable crash or print anything but the spec's answer.

Whatever the environment and stdin (hostile nesting, absurd numbers, undecodable paths, huge or
missing input), a runtime gets a CNI error object with a code on stdout, never a traceback, and
a slow or jammed agent socket ends in code 11 within the configured timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antrea.agent.cniserver.install import install_plugin

from .conftest import BASE_ENV, FULL_RESULT


def _check_answer(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any] | None:
    """The spec's contract for any invocation; returns the error object, if any."""
    assert proc.returncode in (0, 1), (proc.returncode, proc.stdout, proc.stderr)
    assert b"Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        if proc.stdout:
            assert isinstance(json.loads(proc.stdout), dict)
        return None
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict) and set(doc) <= {"cniVersion", "code", "msg", "details"}, doc
    assert isinstance(doc["code"], int) and not isinstance(doc["code"], bool) and doc["code"] > 0
    assert isinstance(doc["msg"], str) and doc["msg"]
    assert isinstance(doc.get("details", ""), str)
    assert isinstance(doc["cniVersion"], str)
    return doc


def _run(exe: Path, env: dict[bytes, bytes], stdin: bytes, timeout: float = 30) -> Any:
    return subprocess.run(
        [str(exe)], env=env, input=stdin, capture_output=True, timeout=timeout, check=False
    )


def _benv(**override: str | None) -> dict[bytes, bytes]:
    env = {**BASE_ENV, **override}
    return {k.encode(): v.encode() for k, v in env.items() if v is not None}


def _config(agent_path: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "antrea",
        "type": "antrea",
        "cniSocket": agent_path,
    }
    conf.update(extra)
    return conf


# -- the inputs issue 9 found printing a traceback ------------------------------------------


@pytest.mark.parametrize("depth", [150, 5_000, 50_000])
def test_deeply_nested_config_is_code_6(plugin_exe, agent, depth):
    nested = "[" * depth + "]" * depth
    stdin = '{"cniVersion": "1.0.0", "name": "antrea", "type": "antrea", "cniSocket": '
    stdin += f'{json.dumps(agent.path)}, "x": {nested}}}'
    proc = _run(plugin_exe, _benv(), stdin.encode())
    doc = _check_answer(proc)
    assert doc is not None and doc["code"] == 6, doc
    assert "nested" in doc["msg"]
    assert agent.requests == []


def test_moderately_nested_unknown_key_is_passed_through(run_plugin, make_config, agent):
    """The depth limit is far above any real config: 80 levels reach the agent."""
    deep: Any = {}
    for _ in range(40):
        deep = {"a": [deep]}
    run = run_plugin(make_config(extra=deep))
    assert run.rc == 0, run.stdout
    assert agent.requests[0]["config"]["extra"] == deep


@pytest.mark.parametrize("timeout", [1e300, 10**400, 86401, -1, 0.0])
def test_absurd_timeout_is_code_7(plugin_exe, agent, timeout):
    stdin = json.dumps(_config(agent.path)).rstrip("}") + f', "cniTimeoutSeconds": {timeout}}}'
    doc = _check_answer(_run(plugin_exe, _benv(), stdin.encode()))
    assert doc is not None and doc["code"] == 7, doc
    assert "cniTimeoutSeconds" in doc["msg"]


@pytest.mark.parametrize(
    "socket_json",
    ['"/tmp/\\udc80.sock"', '"/tmp/\\ud800"', '"/tmp/a\\u0000b"', json.dumps("/" * 200)],
)
def test_unusable_socket_path_is_code_7(plugin_exe, agent, socket_json):
    """A lone surrogate, a NUL or an over-long path: no socket can have that name."""
    stdin = json.dumps(_config(agent.path)).replace(json.dumps(agent.path), socket_json)
    doc = _check_answer(_run(plugin_exe, _benv(), stdin.encode()))
    assert doc is not None and doc["code"] == 7, doc
    assert "cniSocket" in doc["msg"]


def test_huge_stdin_is_an_error_not_a_crash(plugin_exe, agent):
    """5 MiB of config: more than the agent takes (the C shim does not even send it)."""
    filler = "x" * (5 << 20)
    stdin = json.dumps(_config(agent.path, filler=filler)).encode()
    proc = _run(plugin_exe, _benv(), stdin)
    doc = _check_answer(proc)
    assert doc is not None and doc["code"] == 6, doc
    assert "larger than 4 MiB" in doc["msg"]
    assert agent.requests == []


@pytest.mark.parametrize("command", ["ADD", "VERSION"])
def test_closed_stdin_is_an_answer_not_a_crash(plugin_exe, agent, command):
    """No stdin at all (fd 0 closed): an empty config, so code 6 (VERSION: our versions)."""
    proc = subprocess.run(
        [str(plugin_exe)],
        env=_benv(CNI_COMMAND=command),
        capture_output=True,
        preexec_fn=lambda: os.close(0),
        timeout=30,
        check=False,
    )
    doc = _check_answer(proc)
    if command == "VERSION":
        assert doc is None and json.loads(proc.stdout)["cniVersion"] == "1.1.0"
    else:
        assert doc is not None and doc["code"] in (5, 6), doc


def test_missing_environment_is_code_4(plugin_exe, agent):
    proc = _run(plugin_exe, {}, json.dumps(_config(agent.path)).encode())
    doc = _check_answer(proc)
    assert doc is not None and doc["code"] == 4 and "CNI_COMMAND" in doc["msg"]


# -- the socket: jammed, silent, absent -------------------------------------------------------


def test_full_listen_backlog_times_out_with_code_11(tmp_path, shim_exe):
    """Nobody accepts and the backlog is full: connect cannot complete; 11 after the timeout.

    (The C shim connects before anything is validated; the Python plugin only after.)
    """
    path = f"/tmp/antrea-cni-jam-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the backlog (a non-blocking connect fails once it is full)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            fillers.append(s)
        exe = install_plugin(tmp_path, socket=path, shim=shim_exe)
        conf = _config(path, cniTimeoutSeconds=0.3)
        proc = _run(exe, _benv(), json.dumps(conf).encode(), timeout=10)
        doc = _check_answer(proc)
        assert doc is not None and doc["code"] == 11, doc
        assert "timed out" in doc["msg"] and path in doc["msg"]
    finally:
        for s in fillers:
            s.close()
        server.close()
        os.unlink(path)


def test_accepting_but_silent_agent_times_out_with_code_11(plugin_exe, agent, tmp_path):
    path = f"/tmp/antrea-cni-silent-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    try:
        conf = _config(path, cniTimeoutSeconds=0.3)
        proc = _run(plugin_exe, _benv(), json.dumps(conf).encode(), timeout=10)
        doc = _check_answer(proc)
        assert doc is not None and doc["code"] == 11, doc
        assert "timed out" in doc["msg"]
    finally:
        server.close()
        os.unlink(path)


def _serve_once(path: str, answer: bytes) -> Any:
    """A one-connection server at ``path`` that reads the request and sends ``answer``."""
    import threading

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_only_the_announced_bytes_reach_stdout(tmp_path, shim_exe):
    path = f"/tmp/antrea-cni-extra-{os.getpid()}.sock"
    server, thread = _serve_once(path, b"0 3\n{}\nTRAILING GARBAGE")
    try:
        exe = install_plugin(tmp_path, socket=path, shim=shim_exe)
        proc = _run(exe, _benv(CNI_COMMAND="DEL"), json.dumps(_config(path)).encode(), timeout=10)
        assert proc.returncode == 0 and proc.stdout == b"{}\n"
    finally:
        thread.join(5)
        server.close()
        os.unlink(path)


@pytest.mark.parametrize(
    "answer",
    [b"", b"0", b"0 5\nab", b"x 1\n{", b"300 2\n{}", b"1 99999999999\n", b"0 -1\n", b"\n" * 10],
)
def test_garbage_from_the_socket_is_an_error(tmp_path, shim_exe, answer):
    """The shim's side of its protocol: any answer that is not it is 201 (or 11: cut short).
    (Protocol-1 answers to the Python plugin: test_plugin_agent.)"""
    import threading

    path = f"/tmp/antrea-cni-garbage-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        exe = install_plugin(tmp_path, socket=path, shim=shim_exe)
        proc = _run(exe, _benv(), json.dumps(_config(path)).encode(), timeout=10)
        doc = _check_answer(proc)
        assert doc is not None and doc["code"] in (11, 201), doc
    finally:
        thread.join(5)
        server.close()
        os.unlink(path)


# -- fuzz -------------------------------------------------------------------------------------

_KEYS = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
]
_env_bytes = st.binary(max_size=40).filter(lambda b: b"\0" not in b)
_env = st.dictionaries(
    st.one_of(
        st.sampled_from(_KEYS),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=8).map(lambda s: "CNI_" + s),
    ).map(str.encode),
    st.one_of(
        st.sampled_from([b"ADD", b"DEL", b"CHECK", b"STATUS", b"GC", b"VERSION", b"eth0", b""]),
        _env_bytes,
    ),
    max_size=7,
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_CONFIG_KEYS = [
    "cniVersion", "name", "type", "ipam", "dns", "runtimeConfig", "prevResult", "cniSocket",
    "cniTimeoutSeconds", "cni.dev/valid-attachments", "args",
]  # fmt: skip


@st.composite
def _stdin(draw: st.DrawFn, agent_path: str) -> bytes:
    kind = draw(st.sampled_from(["config", "mutated", "bytes", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json_values)).encode()
    conf: dict[str, Any] = {
        "cniVersion": draw(st.sampled_from(["0.3.0", "0.4.0", "1.0.0", "1.1.0", "9.9.9"])),
        "name": "antrea",
        "type": "antrea",
        "cniSocket": agent_path,
        "cniTimeoutSeconds": 5,
    }
    for key in draw(st.lists(st.sampled_from(_CONFIG_KEYS), max_size=3)):
        conf[key] = draw(_json_values)
    if draw(st.booleans()):
        conf["prevResult"] = FULL_RESULT
    text = json.dumps(conf).encode()
    if kind == "mutated" and text:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.binary(max_size=4)) + text[at + draw(st.integers(0, 3)) :]
    return text


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_environment_and_stdin(plugin_kind, plugin_exe, agent, data):
    """Any CNI_* environment and any stdin: the spec's answer, with a code, and no crash."""
    # The Python plugin is ~10x slower to start: fewer examples, same contract.
    if plugin_kind == "python" and data.draw(st.integers(0, 4), label="sample") != 0:
        return
    env = data.draw(_env, label="env")
    stdin = data.draw(_stdin(agent.path), label="stdin")
    _check_answer(_run(plugin_exe, env, stdin))
