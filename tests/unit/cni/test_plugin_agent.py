"""Forwarding to the agent: request shape, pass-through of its errors, and its absence."""

from __future__ import annotations

import json
import time

import pytest


def test_add_request_follows_the_protocol(run_plugin, make_config, agent):
    conf = make_config()
    run = run_plugin(conf)
    assert run.rc == 0, run.stdout + run.stderr
    (req,) = agent.requests
    assert req == {
        "version": 1,
        "command": "ADD",
        "containerID": "0123456789abcdef",
        "netns": "/var/run/netns/pod1",
        "ifname": "eth0",
        "args": "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_UID=u1",
        "path": "/opt/cni/bin",
        "config": conf,
    }
    assert run.stderr == ""


def test_repeated_del_succeeds(run_plugin, make_config, agent):
    """Repeated DELs must succeed (the fake agent, like ours, answers {} every time)."""
    for _ in range(3):
        run = run_plugin(make_config(), CNI_COMMAND="DEL")
        assert run.rc == 0
        assert run.stdout == ""
    assert [r["command"] for r in agent.requests] == ["DEL"] * 3


def test_check_success_prints_nothing(run_plugin, make_config, agent, full_result):
    run = run_plugin(make_config(prevResult=full_result), CNI_COMMAND="CHECK")
    assert run.rc == 0
    assert run.stdout == ""


@pytest.mark.parametrize(
    "case",
    [
        (101, "IPAM failure: no free address in 10.244.1.0/24", "254 allocated"),
        (102, "failed to configure interface", ""),
        (103, "Failed to match addr 10.244.1.2/24 on interface eth0", ""),
        (11, "pod network not ready after 30s", ""),
        (7, "podCIDR not set on Node node1", ""),
        (999, "internal", "trace"),
    ],
)
def test_agent_errors_pass_through(run_plugin, make_config, agent, full_result, case):
    code, msg, details = case
    agent.reply_error(code, msg, details)
    run = run_plugin(make_config(prevResult=full_result), CNI_COMMAND="CHECK")
    assert run.code == code
    assert run.json["msg"] == msg
    assert run.json.get("details", "") == details


@pytest.mark.parametrize("code", [50, 51])
def test_status_not_available_passes_through(run_plugin, make_config, agent, code):
    agent.reply_error(code, "not ready")
    run = run_plugin(make_config("1.1.0"), CNI_COMMAND="STATUS")
    assert run.code == code


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_agent_absent_is_code_11_with_a_clear_message(run_plugin, make_config, command, tmp_path):
    sock = f"/tmp/antrea-cni-absent-{id(tmp_path):x}.sock"
    conf = make_config("1.0.0", cniSocket=sock, prevResult={"cniVersion": "1.0.0"})
    run = run_plugin(conf, CNI_COMMAND=command)
    assert run.code == 11
    assert "antrea agent is not running" in run.json["msg"]
    assert sock in run.json["msg"]


def test_socket_without_listener_is_code_11(run_plugin, make_config, dead_socket):
    run = run_plugin(make_config(cniSocket=dead_socket))
    assert run.code == 11
    assert dead_socket in run.json["msg"]


def test_status_without_agent_is_not_available(run_plugin, make_config, tmp_path):
    """STATUS has its own code for "cannot ADD right now": 50."""
    conf = make_config("1.1.0", cniSocket=f"/tmp/antrea-cni-absent-{id(tmp_path):x}.sock")
    run = run_plugin(conf, CNI_COMMAND="STATUS")
    assert run.code == 50


def test_agent_timeout_is_code_11(run_plugin, make_config, agent):
    def slow(_req):
        time.sleep(2)
        return b'{"result": {}}\n'

    agent.responder = slow
    run = run_plugin(make_config(cniTimeoutSeconds=0.3))
    assert run.code == 11
    assert "timed out" in run.json["msg"]


def test_agent_hanging_up_is_code_11(run_plugin, make_config, agent):
    agent.responder = lambda _req: None
    run = run_plugin(make_config())
    assert run.code == 11
    assert "closed the connection" in run.json["msg"]


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\n",
        b"[]\n",
        b'{"result": []}\n',
        b'{"error": {"code": "x"}}\n',
        b'{"error": "boom"}\n',
        b'{"result": {"ips": [{"gateway": "10.0.0.1"}]}}\n',
    ],
)
def test_malformed_agent_answer_is_code_201(run_plugin, make_config, agent, answer):
    agent.responder = lambda _req: answer
    run = run_plugin(make_config())
    assert run.code == 201


def test_answer_may_span_several_reads(run_plugin, make_config, agent, full_result):
    big = dict(full_result, routes=[{"dst": f"10.{i // 256}.{i % 256}.0/24"} for i in range(5000)])
    agent.responder = lambda _req: json.dumps({"result": big}).encode() + b"\n"
    run = run_plugin(make_config("1.1.0"))
    assert run.rc == 0
    assert len(run.json["routes"]) == 5000


def test_concurrent_invocations_each_get_their_own_answer(plugin_exe, make_config, agent):
    """Different containers may run in parallel; one connection per request keeps them apart."""
    import subprocess

    def respond(req):
        result = {
            "cniVersion": "1.1.0",
            "ips": [{"address": f"10.0.0.{req['containerID'][1:]}/24"}],
        }
        return json.dumps({"result": result}).encode() + b"\n"

    agent.responder = respond
    conf = json.dumps(make_config()).encode()
    procs = []
    for i in range(2, 22):
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"c{i}",
            "CNI_NETNS": "/x",
            "CNI_IFNAME": "eth0",
        }
        procs.append(
            (
                i,
                subprocess.Popen(
                    [plugin_exe], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                ),
            )
        )
    for i, proc in procs:
        out, _ = proc.communicate(conf, timeout=30)
        assert proc.returncode == 0
        assert json.loads(out)["ips"][0]["address"] == f"10.0.0.{i}/24"


def test_status_with_a_silent_agent_is_not_available(run_plugin, make_config, agent):
    agent.responder = lambda _req: None
    run = run_plugin(make_config("1.1.0"), CNI_COMMAND="STATUS")
    assert run.code == 50
