"""Config validation: codes 1, 2, 6 and 7, all decided without the agent."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    "stdin", [b"{not json", b"", b"   ", b"[1]", b'"x"', b"{} {}", b"\xff\xfe", b'{"a": NaN}']
)
def test_undecodable_config_is_code_6(run_plugin, agent, stdin):
    run = run_plugin(stdin)
    assert run.code == 6
    assert agent.requests == []


def test_non_string_version_is_code_6(run_plugin, make_config, agent):
    run = run_plugin(make_config(version=1))
    assert run.code == 6


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": None}, "network name"),
        ({"name": ""}, "network name"),
        ({"name": "test/net"}, "network name"),
        ({"cniVersion": None}, "cniVersion"),
        ({"type": None}, "type"),
        ({"type": "../antrea"}, "type"),
        ({"cniSocket": 5}, "cniSocket"),
        ({"cniSocket": ""}, "cniSocket"),
        ({"cniTimeoutSeconds": 0}, "cniTimeoutSeconds"),
        ({"ipam": "host-local"}, "ipam"),
        ({"dns": []}, "dns"),
        ({"runtimeConfig": 1}, "runtimeConfig"),
    ],
)
def test_invalid_config_is_code_7(run_plugin, make_config, agent, change, needle):
    conf = make_config()
    for key, value in change.items():
        if value is None:
            del conf[key]
        else:
            conf[key] = value
    run = run_plugin(conf)
    assert run.code == 7, run.stdout
    assert needle in run.json["msg"] + run.json.get("details", "")
    assert agent.requests == []


@pytest.mark.parametrize("version", ["9.9.9", "0.2.0", "0.1.0", "1.2.0", "1.0", "latest"])
def test_unsupported_version_is_code_1(run_plugin, make_config, agent, version):
    """The details list what we support, like libcni's "incompatible CNI versions"."""
    run = run_plugin(make_config(version))
    assert run.code == 1
    assert run.json["msg"] == "incompatible CNI versions"
    assert version in run.json["details"]
    assert '"1.1.0"' in run.json["details"]
    assert agent.requests == []


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_unsupported_version_is_code_1_for_every_command(run_plugin, make_config, command):
    run = run_plugin(make_config("9.9.9"), CNI_COMMAND=command)
    assert run.code == 1


@pytest.mark.parametrize(
    ("command", "version"),
    [("CHECK", "0.3.0"), ("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "0.4.0"), ("GC", "1.0.0")],
)
def test_command_newer_than_version_is_code_1(run_plugin, make_config, agent, command, version):
    """CHECK exists from 0.4.0, STATUS and GC from 1.1.0."""
    conf = make_config(version, **{"cni.dev/valid-attachments": []})
    run = run_plugin(conf, CNI_COMMAND=command)
    assert run.code == 1
    assert command in run.json["msg"]
    assert agent.requests == []


@pytest.mark.parametrize("ipam_type", ["dhcp", "static", "whereabouts"])
def test_unsupported_ipam_is_code_2_naming_key_and_value(run_plugin, make_config, agent, ipam_type):
    """Code 2 must name the field and its value."""
    run = run_plugin(make_config(ipam={"type": ipam_type}))
    assert run.code == 2
    assert "ipam.type" in run.json["msg"]
    assert ipam_type in run.json["msg"]


def test_config_without_ipam_is_accepted(run_plugin, make_config, agent):
    conf = make_config()
    del conf["ipam"]
    assert run_plugin(conf).rc == 0


def test_unknown_keys_are_passed_through(run_plugin, make_config, agent):
    """The spec says unknown keys must be passed through; the agent sees the config as sent."""
    conf = make_config(myKey={"nested": [1, 2]}, runtimeConfig={"portMappings": []})
    assert run_plugin(conf).rc == 0
    sent = agent.requests[0]["config"]
    assert sent["myKey"] == {"nested": [1, 2]}
    assert sent["runtimeConfig"] == {"portMappings": []}


def test_error_reports_the_requested_version(run_plugin, make_config, agent):
    run = run_plugin(make_config("0.4.0", name="bad/name"))
    assert run.code == 7
    assert run.json["cniVersion"] == "0.4.0"


def test_error_with_unusable_version_reports_ours(run_plugin, make_config, agent):
    run = run_plugin(make_config("9.9.9"))
    assert run.json["cniVersion"] == "1.1.0"


def test_check_requires_prev_result(run_plugin, make_config, agent):
    run = run_plugin(make_config("1.0.0"), CNI_COMMAND="CHECK")
    assert run.code == 7
    assert "prevResult" in run.json["msg"]
    assert agent.requests == []


@pytest.mark.parametrize(
    "prev",
    [
        [],
        "x",
        {"ips": "10.0.0.1/24"},
        {"ips": [{"gateway": "10.0.0.1"}]},
        {"interfaces": [{"mac": "aa"}]},
        {"ips": [{"address": "10.0.0.2/24", "interface": 3}], "interfaces": [{"name": "eth0"}]},
        {"routes": [{"gw": "10.0.0.1"}]},
    ],
)
@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_malformed_prev_result_is_code_7(run_plugin, make_config, agent, prev, command):
    run = run_plugin(make_config(prevResult=prev), CNI_COMMAND=command)
    assert run.code == 7
    assert "prevResult" in run.json["msg"]


def test_del_tolerates_a_malformed_prev_result(run_plugin, make_config, agent):
    """DEL must clean up what it can: it goes on without the unreadable prevResult."""
    run = run_plugin(make_config(prevResult={"ips": "x"}), CNI_COMMAND="DEL")
    assert run.rc == 0, run.stdout
    assert "prevResult" not in agent.requests[0]["config"]


@pytest.mark.parametrize(
    "attachments", [None, "x", [{"containerID": "a"}], [{"containerID": 1, "ifname": "eth0"}]]
)
def test_gc_needs_valid_attachments(run_plugin, make_config, agent, attachments):
    conf = make_config("1.1.0")
    if attachments is not None:
        conf["cni.dev/valid-attachments"] = attachments
    run = run_plugin(conf, CNI_COMMAND="GC")
    assert run.code == 7
    assert "valid-attachments" in run.json["msg"]


def test_gc_is_forwarded_without_output(run_plugin, make_config, agent):
    keep = [{"containerID": "abc", "ifname": "eth0"}]
    conf = make_config("1.1.0", **{"cni.dev/valid-attachments": keep, "cni.dev/attachments": keep})
    run = run_plugin(conf, CNI_COMMAND="GC", CNI_CONTAINERID=None, CNI_IFNAME=None, CNI_NETNS=None)
    assert run.rc == 0, run.stdout
    assert run.stdout == ""
    assert agent.requests[0]["config"]["cni.dev/valid-attachments"] == keep


def test_config_order_name_before_container_id(run_plugin, make_config, agent):
    """libcni's skel checks the network name (7) before the container ID (4)."""
    run = run_plugin(make_config(name="bad/name"), CNI_CONTAINERID="bad/id")
    assert run.code == 7


def test_stdin_is_read_as_utf8(run_plugin, make_config, agent):
    conf = make_config(description="café ☕")
    run = run_plugin(json.dumps(conf, ensure_ascii=False).encode())
    assert run.rc == 0, run.stdout
    assert agent.requests[0]["config"]["description"] == "café ☕"
