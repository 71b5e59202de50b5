"""Fixtures that drive the installed plugin executable the way a container runtime does.

Every plugin test runs against both executables (``plugin_kind``):

- ``c``: the static C shim as ``install_plugin`` installs it, talking to ``agent``, which is the
  agent's real CNI front end (``antrea.agent.cniserver.server.CNIServer``: every CNI rule and
  error code) with the test's ``responder`` in place of the pod work;
- ``python``: the Python ``antrea-cni`` launcher (``install_python_plugin``, so the tests also
  cover its ``-IS`` start-up path), talking to an in-test server speaking protocol version 1.

Either way the test sees the same thing: the executable's stdout and exit status, and in
``agent.requests`` each request as the agent's pod side receives it (protocol-1 shape).
"""

from __future__ import annotations

import asyncio
import contextvars
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

from antrea.agent.cniserver.install import find_shim, install_plugin, install_python_plugin
from antrea.agent.cniserver.server import CNIServer
from antrea.apis.cni import protocol

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


_writer: contextvars.ContextVar[asyncio.StreamWriter] = contextvars.ContextVar("writer")


class _RespondingServer(CNIServer):
    """The agent's CNI front end with `ShimAgent.responder` in place of PodConfigurator."""

    fake: ShimAgent

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _writer.set(writer)
        await super()._handle(reader, writer)

    async def dispatch(self, raw: dict[str, Any], confirm: Any = None) -> dict[str, Any]:
        req = json.loads(json.dumps(raw))  # as a protocol-1 agent would have decoded it
        self.fake.requests.append(req)
        answer = await asyncio.to_thread(self.fake.responder, req)
        if answer is None:  # hang up without answering, as the protocol-1 fake does
            _writer.get().transport.abort()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable: the connection was aborted")
        result = protocol.decode_response(answer.rstrip(b"\n"))
        if confirm is not None:
            await confirm(result)
        return result


@dataclass
class ShimAgent(FakeAgent):
    """What the C executable talks to: the agent's front end answering from `responder`."""

    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _cni: _RespondingServer | None = None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()

        async def up() -> _RespondingServer:
            ready = asyncio.Event()
            ready.set()
            server = _RespondingServer(socket_path=self.path, pods=None, ready=ready)  # type: ignore[arg-type]
            server.fake = self
            await server.start()
            return server

        self._cni = asyncio.run_coroutine_threadsafe(up(), loop).result(10)

    def stop(self) -> None:
        if self._loop is not None and self._cni is not None:
            asyncio.run_coroutine_threadsafe(self._cni.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if os.path.exists(self.path):
            os.unlink(self.path)


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


@pytest.fixture(params=["c", "python"], scope="session")
def plugin_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def python_plugin_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_python_plugin(tmp_path_factory.mktemp("cni-bin"))


@pytest.fixture(scope="session")
def shim_exe() -> Path:
    return find_shim()


@pytest.fixture
def plugin_exe(
    plugin_kind: str, python_plugin_exe: Path, shim_exe: Path, agent: FakeAgent, tmp_path: Path
) -> Path:
    """The executable under test; the C one as installed for this test's agent socket."""
    if plugin_kind == "python":
        return python_plugin_exe
    return install_plugin(tmp_path / "cni-bin", socket=agent.path, shim=shim_exe)


@pytest.fixture
def agent(plugin_kind: str, tmp_path: Path) -> Iterator[FakeAgent]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    short = Path(f"/tmp/antrea-cni-test-{os.getpid()}-{id(tmp_path):x}.sock")
    fake = ShimAgent(path=str(short)) if plugin_kind == "c" else FakeAgent(path=str(short))
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
