"""antctl's agent commands against a fake local agent API (stdlib HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from antrea.antctl import cli

POLICY = {
    "metadata": {"name": "uid-1"},
    "sourceRef": {"type": "K8sNetworkPolicy", "namespace": "x", "name": "np1", "uid": "uid-1"},
    "appliedToGroups": ["atg"],
    "generation": 2,
    "realizedGeneration": 2,
    "realized": True,
    "message": "",
    "localPods": ["x/a"],
    "rules": [{"stats": {"sessions": 3, "packets": 10, "bytes": 1000}}],
}
ROUTES = {
    "/podinterfaces": [
        {
            "podNamespace": "x",
            "podName": "a",
            "interfaceName": "a-123456",
            "ip": "10.244.1.10",
            "mac": "02:00:00:00:00:0a",
            "ofport": 3,
            "containerID": "c" * 64,
        }
    ],
    "/networkpolicies": [POLICY],
    "/agentinfo": {
        "nodeName": "node1",
        "podCIDR": "10.244.1.0/24",
        "policyReady": True,
        "controllerConnected": True,
        "localPodCount": 1,
    },
    "/addressgroups": [],
    "/appliedtogroups": [{"metadata": {"name": "atg"}, "groupMembers": []}],
    "/ovsflows": [{"flow": "table=90, priority=200,ip,reg1=0x3 actions=conjunction(1,2/2)"}],
    "/networkpolicyflows": [{"flow": "table=90, priority=190,conj_id=1,ip actions=goto_table:105"}],
    "/ovstracing": {"flow": "in_port=3,...", "result": "Datapath actions: 4"},
}


@pytest.fixture
def agent_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, list[str]]]]]:
    seen: list[tuple[str, dict[str, list[str]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            u = urlparse(self.path)
            seen.append((u.path, parse_qs(u.query)))
            body = ROUTES.get(u.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b"not here")
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv("ANTREA_AGENT_API", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_podinterface(agent_api: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "pi", "-n", "x"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "NAMESPACE", "NAME", "INTERFACE-NAME", "IP", "MAC", "OF-PORT", "CONTAINER-ID",
    ]  # fmt: skip
    assert "a-123456" in out and "10.244.1.10" in out
    assert agent_api[-1] == ("/podinterfaces", {"namespace": ["x"]})


def test_ovsflows_variants(agent_api: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "of", "-p", "a", "-n", "x"]) == 0
    assert agent_api[-1] == ("/ovsflows", {"pod": ["x/a"]})
    assert cli.main(["get", "of", "-T", "IngressRule"]) == 0
    assert agent_api[-1] == ("/ovsflows", {"table": ["IngressRule"]})
    assert cli.main(["get", "ovsflows", "-N", "np1", "-n", "x"]) == 0
    assert agent_api[-1] == ("/networkpolicyflows", {"name": ["np1"], "namespace": ["x"]})
    assert "conj_id=1" in capsys.readouterr().out


def test_trace_packet(agent_api: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trace-packet", "-S", "x/a", "-D", "y/b", "-f", "tcp,tp_dst=80"]) == 0
    assert agent_api[-1] == (
        "/ovstracing",
        {"source": ["x/a"], "destination": ["y/b"], "flow": ["tcp,tp_dst=80"]},
    )
    assert "Datapath actions: 4" in capsys.readouterr().out


def test_agentinfo_and_networkpolicy(
    agent_api: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "ai"]) == 0
    out = capsys.readouterr().out
    assert "node1" in out and "Healthy" in out and "connected" in out
    assert cli.main(["get", "netpol", "-o", "table"]) == 0
    out = capsys.readouterr().out
    assert "K8sNetworkPolicy:x/np1" in out and "gen 2" in out
    assert out.splitlines()[1].split()[-2:] == ["3", "10"]
    assert cli.main(["get", "atg"]) == 0
    assert "atg" in capsys.readouterr().out


def test_unreachable_agent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTREA_AGENT_API", "http://127.0.0.1:9")
    assert cli.main(["get", "pi"]) == 1
    assert "cannot reach the agent" in capsys.readouterr().err
