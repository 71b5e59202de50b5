"""Environment validation: code 4 before the plugin ever talks to the agent."""

from __future__ import annotations

import pytest


def test_missing_command_is_code_4(run_plugin, make_config, agent):
    """Without CNI_COMMAND there is nothing to do; the message names the variable."""
    run = run_plugin(make_config(), CNI_COMMAND=None)
    assert run.code == 4
    assert "CNI_COMMAND" in run.json["msg"]
    assert agent.requests == []


@pytest.mark.parametrize("command", ["FOO", "add", "Add", "VERSIONS"])
def test_unknown_command_is_code_4(run_plugin, make_config, agent, command):
    """Commands are the spec's upper-case verbs only."""
    run = run_plugin(make_config(), CNI_COMMAND=command)
    assert run.code == 4
    assert command in run.json["msg"]
    assert agent.requests == []


@pytest.mark.parametrize(
    "case",
    [
        (
            "ADD",
            ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME",
        ),
        ("ADD", ["CNI_NETNS"], "CNI_NETNS"),
        ("ADD", ["CNI_IFNAME"], "CNI_IFNAME"),
        ("CHECK", ["CNI_NETNS"], "CNI_NETNS"),
        ("DEL", ["CNI_CONTAINERID"], "CNI_CONTAINERID"),
        ("DEL", ["CNI_IFNAME"], "CNI_IFNAME"),
        ("GC", ["CNI_PATH"], "CNI_PATH"),
    ],
)
def test_missing_required_env_names_them(run_plugin, make_config, agent, case):
    """Each command's required variables; the message lists every missing one."""
    command, removed, named = case
    version = "1.1.0"
    conf = make_config(version, **{"cni.dev/valid-attachments": []})
    run = run_plugin(conf, CNI_COMMAND=command, **dict.fromkeys(removed))
    assert run.code == 4
    assert named in run.json["msg"]
    assert agent.requests == []


def test_empty_variable_counts_as_missing(run_plugin, make_config, agent):
    run = run_plugin(make_config(), CNI_IFNAME="")
    assert run.code == 4
    assert "CNI_IFNAME" in run.json["msg"]


def test_del_without_netns_is_forwarded(run_plugin, make_config, agent):
    """CNI_NETNS is optional for DEL: the namespace may be gone already."""
    run = run_plugin(make_config(), CNI_COMMAND="DEL", CNI_NETNS=None)
    assert run.rc == 0, run.stdout
    assert run.stdout == ""
    assert agent.requests[0]["command"] == "DEL"
    assert agent.requests[0]["netns"] == ""


def test_status_needs_only_the_command(run_plugin, make_config, agent):
    env = dict.fromkeys(["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS"])
    run = run_plugin(make_config("1.1.0"), CNI_COMMAND="STATUS", **env)
    assert run.rc == 0, run.stdout
    assert agent.requests[0]["command"] == "STATUS"


def test_cni_path_is_optional_for_add(run_plugin, make_config, agent):
    """The spec lists CNI_PATH as optional for ADD/DEL/CHECK (libcni 1.1.1's skel disagrees)."""
    run = run_plugin(make_config(), CNI_PATH=None)
    assert run.rc == 0, run.stdout


@pytest.mark.parametrize("container_id", ["bad/id", "-abc", "_abc", ".abc", "a b", "abc\n", "ä1"])
def test_invalid_container_id_is_code_4(run_plugin, make_config, agent, container_id):
    run = run_plugin(make_config(), CNI_CONTAINERID=container_id)
    assert run.code == 4
    assert "containerID" in run.json["msg"]
    assert agent.requests == []


@pytest.mark.parametrize("container_id", ["a", "0", "abc-DEF_1.2", "cnitool-0123456789abcdef0123"])
def test_valid_container_ids_pass(run_plugin, make_config, agent, container_id):
    run = run_plugin(make_config(), CNI_CONTAINERID=container_id)
    assert run.rc == 0, run.stdout
    assert agent.requests[0]["containerID"] == container_id


@pytest.mark.parametrize("ifname", ["et/h0", "eth:0", "eth 0", "eth\t0", ".", "..", "x" * 16])
def test_invalid_ifname_is_code_4(run_plugin, make_config, agent, ifname):
    run = run_plugin(make_config(), CNI_IFNAME=ifname)
    assert run.code == 4
    assert "interface name" in run.json["msg"]
    assert agent.requests == []


def test_fifteen_character_ifname_is_fine(run_plugin, make_config, agent):
    run = run_plugin(make_config(), CNI_IFNAME="x" * 15)
    assert run.rc == 0, run.stdout


@pytest.mark.parametrize("args", ["FOO", "=bar", "K8S_POD_NAME=a;garbage"])
def test_malformed_cni_args_is_code_4(run_plugin, make_config, agent, args):
    run = run_plugin(make_config(), CNI_ARGS=args)
    assert run.code == 4
    assert "CNI_ARGS" in run.json["msg"]


def test_cni_args_are_forwarded_verbatim(run_plugin, make_config, agent):
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;;EXTRA=1"
    run = run_plugin(make_config(), CNI_ARGS=args)
    assert run.rc == 0, run.stdout
    assert agent.requests[0]["args"] == args


def test_env_is_checked_before_stdin(run_plugin, agent):
    """As in libcni's skel: bad environment wins over an undecodable config."""
    run = run_plugin(b"{not json", CNI_NETNS=None)
    assert run.code == 4
