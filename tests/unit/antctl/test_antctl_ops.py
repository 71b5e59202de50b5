"""antctl completion scripts (run by a real bash), log-level and supportbundle against a
local agent API stand-in, and the kubectl plugin entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from antrea.antctl import cli
from antrea.antctl.ops_cmds import completion_script


def _complete(script: str, words: list[str]) -> list[str]:
    line = " ".join(words)
    prog = f"""{script}
COMP_WORDS=({line})
COMP_CWORD={len(words) - 1}
_antctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completion_walks_the_command_tree() -> None:
    script = completion_script("bash")
    assert script.rstrip().endswith("complete -F _antctl antctl")
    assert {"get", "log-level", "supportbundle", "completion", "version"} <= set(
        _complete(script, ["antctl", "''"])
    )
    assert _complete(script, ["antctl", "get", "netp"]) == ["netpol"]
    shells = set(_complete(script, ["antctl", "completion", "''"]))
    assert {"bash", "zsh", "fish"} <= shells and "get" not in shells
    assert "--controller" in _complete(script, ["antctl", "log-level", "--c"])
    assert _complete(script, ["antctl", "nosuch", "''"]) != []  # unknown word: stays at top


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", shell]) == 0
    out = capsys.readouterr().out
    if shell == "fish":
        assert "complete -c antctl -n '__fish_use_subcommand' -a supportbundle" in out
        assert "__fish_seen_subcommand_from get' -a networkpolicy" in out
    else:
        assert out.startswith("#compdef antctl") and "complete -F _antctl antctl" in out
        if shutil.which("zsh"):
            subprocess.run(["zsh", "-n"], input=out, text=True, check=True)
    subprocess.run(["bash", "-n"], input=completion_script("bash"), text=True, check=True)


class _Agent(BaseHTTPRequestHandler):
    level = "info"

    def _json(self, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        _Agent.level = self.path.split("level=")[1]
        self._json({"level": _Agent.level})

    def do_GET(self) -> None:
        routes: dict[str, object] = {
            "/loglevel": {"level": _Agent.level},
            "/agentinfo": {"nodeName": "nodeX", "version": "9.9.9"},
            "/config": {"ovsBridge": "br-int", **getattr(_Agent, "config", {})},
            "/ovsflows": [{"flow": "table=0, priority=0 actions=drop"}],
        }
        if self.path in routes:
            self._json(routes[self.path])
        elif self.path == "/debug/tasks":
            body = b"1 tasks\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def agent_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    monkeypatch.setenv("ANTREA_AGENT_API", url)
    try:
        yield url
    finally:
        srv.shutdown()
        srv.server_close()


def test_log_level_on_a_node(agent_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["log-level"]) == 0
    assert capsys.readouterr().out == "info\n"
    assert cli.main(["log-level", "debug"]) == 0
    assert capsys.readouterr().out == "debug\n" and _Agent.level == "debug"
    with pytest.raises(SystemExit):
        cli.main(["log-level", "loud"])


def test_supportbundle_keeps_what_it_could_collect(
    agent_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "agent.log").write_text('{"event": "hello"}\n')
    monkeypatch.setenv("ANTREA_LOG_DIR", str(logs))
    monkeypatch.setenv("OVS_RUNDIR", str(tmp_path / "no-ovs"))
    assert cli.main(["supportbundle", "-d", str(tmp_path / "out")]) == 0
    (bundle,) = (tmp_path / "out").glob("nodeX-*.tar.gz")
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        errors = tar.extractfile("nodeX/errors.txt").read().decode()  # type: ignore[union-attr]
        flows = tar.extractfile("nodeX/flows.txt").read().decode()  # type: ignore[union-attr]
        log = tar.extractfile("nodeX/logs/logs/agent.log").read()  # type: ignore[union-attr]
    assert {
        "nodeX/agentinfo.json",
        "nodeX/config.json",
        "nodeX/tasks.txt",
        "nodeX/loglevel.json",
    } <= names
    assert "nodeX/metrics.prom" not in names and "metrics.prom: HTTP Error 404" in errors
    assert "ovsdb.json:" in errors  # no OVSDB here: recorded, not fatal
    assert flows == "table=0, priority=0 actions=drop\n" and log == b'{"event": "hello"}\n'


def test_kubectl_plugin_entry_point() -> None:
    """`kubectl antrea ...` runs antctl: kubectl finds `kubectl-antrea` on PATH."""
    venv_bin = Path(sys.executable).parent
    plugin = venv_bin / "kubectl-antrea"
    kubectl = venv_bin / "kubectl"
    if not kubectl.exists():
        pytest.skip("no kubectl in the venv")
    assert plugin.exists(), "kubectl-antrea missing: bash bin/setup installs the entry points"
    env = {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(
        [str(kubectl), "antrea", "version", "--client"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.startswith("antctlVersion: ")
    comp = subprocess.run(
        [str(kubectl), "antrea", "completion", "bash"], capture_output=True, text=True, env=env,
        check=True,
    )  # fmt: skip
    assert "complete -F _kubectl_antrea kubectl-antrea" in comp.stdout


def test_featuregates_from_the_running_agent(
    agent_api: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Agent, "config", {"antreaProxy": False}, raising=False)
    assert cli.main(["get", "featuregates", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    status = {(r["component"], r["name"]): r["status"] for r in rows}
    assert status == {
        ("agent", "AntreaPolicy"): "Enabled",
        ("agent", "AntreaProxy"): "Disabled",
        ("controller", "AntreaPolicy"): "Enabled",
    }
    assert cli.main(["get", "fg"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["COMPONENT", "FEATUREGATE", "STATUS", "VERSION", "CONFIG"]


def test_featuregates_defaults_are_the_agents() -> None:
    """antctl reads the configuration as data: its defaults must be the agent's."""
    from antrea.agent.config import AgentConfig
    from antrea.antctl.featuregates import FEATURES

    defaults = AgentConfig()
    for f in FEATURES:
        if f.key:
            assert getattr(defaults, f.key) is f.default, f.key


def test_featuregates_reject_a_non_boolean_switch() -> None:
    from antrea.antctl.controller_client import AntctlError
    from antrea.antctl.featuregates import feature_gates

    assert {r["status"] for r in feature_gates({})} == {"Enabled"}
    gated = {
        (r["name"], r["component"]): r["status"]
        for r in feature_gates({"featureGates": {"AntreaProxy": False}})
    }
    assert gated[("AntreaProxy", "agent")] == "Disabled"
    both = feature_gates({"antreaProxy": True, "featureGates": {"AntreaProxy": False}})
    assert {r["name"]: r["status"] for r in both}["AntreaProxy"] == "Enabled"
    with pytest.raises(AntctlError, match="antreaProxy must be a boolean"):
        feature_gates({"antreaProxy": "yes"})


def test_version_on_a_node(agent_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("antctlVersion: ") and out[1] == "agentVersion: 9.9.9"
    assert cli.main(["version", "--client"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_featuregates_from_the_configmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a node, the agent's configuration file comes from ConfigMap kube-system/antrea-config."""
    import asyncio

    from antrea.antctl import featuregates
    from antrea.k8s import resources

    asked: list[str] = []

    class Client:
        async def close(self) -> None:
            pass

    class Resources:
        def __init__(self, client: Client) -> None:
            pass

        async def get(self, path: str) -> dict[str, object]:
            asked.append(path)
            return {"data": {"antrea-agent.conf": "featureGates:\n  AntreaProxy: false\n"}}

    async def load(path: str) -> Client:
        return Client()

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    monkeypatch.setattr(resources, "load_api_client", load)
    monkeypatch.setattr(resources, "ApiClientResources", Resources)
    raw = asyncio.run(featuregates._from_configmap(str(kubeconfig)))
    assert asked == ["/api/v1/namespaces/kube-system/configmaps/antrea-config"]
    status = {(r["component"], r["name"]): r["status"] for r in featuregates.feature_gates(raw)}
    assert status[("agent", "AntreaProxy")] == "Disabled"
