"""Fixtures that drive the installed plugin executable the way a container runtime does.

``plugin`` is the real launcher written by ``install_plugin`` (so the tests also cover the
``-IS`` start-up path), run with a minimal environment and the config on stdin. ``agent`` is an
in-test unix-socket server speaking the agent protocol, which records every request.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from antrea.cni.install import install_plugin

# A 1.1.0-shaped ADD result using every field some version knows about.
FULL_RESULT: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "nginx-a-3f2c1d", "mac": "aa:bb:cc:00:00:01", "mtu": 1450},
        {
            "name": "eth0",
            "mac": "aa:bb:cc:00:00:02",
            "mtu": 1450,
            "sandbox": "/var/run/netns/pod1",
            "socketPath": "/tmp/x.sock",
            "pciID": "0000:00:01.0",
        },
    ],
    "ips": [
        {"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 1},
        {"address": "fd00:10:244:1::2/64", "gateway": "fd00:10:244:1::1", "interface": 1},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.244.1.1", "mtu": 1450, "priority": 10, "table": 254},
        {"dst": "::/0", "gw": "fd00:10:244:1::1", "scope": 0, "advmss": 1400},
    ],
    "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
}

Responder = Callable[[dict[str, Any]], bytes | None]


def default_responder(req: dict[str, Any]) -> bytes | None:
    result = FULL_RESULT if req["command"] == "ADD" else {}
    return json.dumps({"result": result}).encode() + b"\n"


@dataclass
class FakeAgent:
    """A unix-socket server answering one JSON line per connection, as the agent does."""

    path: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    responder: Responder = default_responder
    _server: socketserver.ThreadingUnixStreamServer | None = None

    def start(self) -> None:
        agent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                req = json.loads(line)
                agent.requests.append(req)
                answer = agent.responder(req)
                if answer is not None:
                    self.wfile.write(answer)

        self._server = socketserver.ThreadingUnixStreamServer(self.path, Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def reply_error(self, code: int, msg: str, details: str = "") -> None:
        body = json.dumps({"error": {"code": code, "msg": msg, "details": details}}).encode()
        self.responder = lambda _req: body + b"\n"


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def code(self) -> int:
        assert self.rc != 0, f"expected an error, got rc=0 and {self.stdout!r}"
        doc = self.json
        assert set(doc) <= {"cniVersion", "code", "msg", "details"}, doc
        assert isinstance(doc["msg"], str)
        code: int = doc["code"]
        return code


@pytest.fixture(scope="session")
def plugin_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(tmp_path_factory.mktemp("cni-bin"))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FakeAgent]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    short = Path(f"/tmp/antrea-cni-test-{os.getpid()}-{id(tmp_path):x}.sock")
    fake = FakeAgent(path=str(short))
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


BASE_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "0123456789abcdef",
    "CNI_NETNS": "/var/run/netns/pod1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_UID=u1",
}


MakeConfig = Callable[..., dict[str, Any]]


@pytest.fixture
def make_config(agent: FakeAgent) -> MakeConfig:
    """``make_config(version="1.0.0", **extra)``: a plugin config pointing at the fake agent."""

    def make(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": version,
            "name": "antrea",
            "type": "antrea",
            "ipam": {"type": "host-local"},
            "cniSocket": agent.path,
        }
        conf.update(extra)
        return conf

    return make


@pytest.fixture
def full_result() -> dict[str, Any]:
    return json.loads(json.dumps(FULL_RESULT))


RunPlugin = Callable[..., Run]


@pytest.fixture
def run_plugin(plugin_exe: Path) -> RunPlugin:
    """``run_plugin(config_or_bytes, CNI_COMMAND="DEL", CNI_NETNS=None, ...)``.

    Keyword arguments override the base environment; ``None`` removes a variable.
    """

    def run(config: dict[str, Any] | bytes | None, **env: str | None) -> Run:
        full = {**BASE_ENV, **env}
        environ = {k: v for k, v in full.items() if v is not None}
        data = config if isinstance(config, bytes) or config is None else json.dumps(config)
        proc = subprocess.run(
            [str(plugin_exe)],
            input=data.encode() if isinstance(data, str) else (data or b""),
            env=environ,
            capture_output=True,
            text=False,
            timeout=30,
            check=False,
        )
        return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run


@pytest.fixture
def dead_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket file nobody listens on: connect() gets ECONNREFUSED."""
    path = f"/tmp/antrea-cni-dead-{os.getpid()}-{id(tmp_path):x}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    try:
        yield path
    finally:
        sock.close()
        os.unlink(path)
