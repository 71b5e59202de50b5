"""Results printed in the shape of the requested cniVersion; VERSION answered locally."""

from __future__ import annotations

import pytest

ALL = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_legacy_result_shape(run_plugin, make_config, agent, version):
    """0.3.x/0.4.0: ips carry version "4"/"6"; no 1.1 interface/route fields; dns always present."""
    run = run_plugin(make_config(version))
    assert run.rc == 0, run.stdout
    res = run.json
    assert res["cniVersion"] == version
    assert [ip["version"] for ip in res["ips"]] == ["4", "6"]
    assert res["ips"][0] == {
        "version": "4",
        "address": "10.244.1.2/24",
        "gateway": "10.244.1.1",
        "interface": 1,
    }
    assert res["interfaces"][1] == {
        "name": "eth0",
        "mac": "aa:bb:cc:00:00:02",
        "sandbox": "/var/run/netns/pod1",
    }
    assert res["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "10.244.1.1"},
        {"dst": "::/0", "gw": "fd00:10:244:1::1"},
    ]
    assert res["dns"] == {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}


def test_1_0_0_result_shape(run_plugin, make_config, agent):
    run = run_plugin(make_config("1.0.0"))
    res = run.json
    assert res["cniVersion"] == "1.0.0"
    assert all("version" not in ip for ip in res["ips"])
    assert res["ips"][1] == {
        "address": "fd00:10:244:1::2/64",
        "gateway": "fd00:10:244:1::1",
        "interface": 1,
    }
    assert res["interfaces"][0] == {"name": "nginx-a-3f2c1d", "mac": "aa:bb:cc:00:00:01"}
    assert res["routes"][0] == {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}
    assert res["dns"]["nameservers"] == ["10.96.0.10"]


def test_1_1_0_result_keeps_everything(run_plugin, make_config, agent, full_result):
    run = run_plugin(make_config("1.1.0"))
    assert run.json == full_result


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_empty_dns_left_out_from_1_0(run_plugin, make_config, agent, version, full_result):
    del full_result["dns"]
    agent.responder = lambda _req: b'{"result": %s}\n' % _dumps(full_result)
    assert "dns" not in run_plugin(make_config(version)).json


def test_empty_dns_printed_for_legacy(run_plugin, make_config, agent, full_result):
    del full_result["dns"]
    agent.responder = lambda _req: b'{"result": %s}\n' % _dumps(full_result)
    assert run_plugin(make_config("0.4.0")).json["dns"] == {}


def _dumps(obj):
    import json

    return json.dumps(obj).encode()


@pytest.mark.parametrize("version", ALL)
def test_version_echoes_a_supported_request(run_plugin, agent, version):
    run = run_plugin(b'{"cniVersion": "%s"}' % version.encode(), CNI_COMMAND="VERSION")
    assert run.rc == 0
    assert run.json == {"cniVersion": version, "supportedVersions": ALL}
    assert agent.requests == []


@pytest.mark.parametrize("stdin", [b"", b"{}", b"{not json", b'{"cniVersion": "9.9.9"}'])
def test_version_never_fails(run_plugin, stdin):
    """VERSION needs only CNI_COMMAND; whatever stdin holds, it answers with our latest."""
    env = dict.fromkeys(["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS"])
    run = run_plugin(stdin, CNI_COMMAND="VERSION", **env)
    assert run.rc == 0
    assert run.json == {"cniVersion": "1.1.0", "supportedVersions": ALL}


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_prev_result_reaches_agent_in_1_1_shape(run_plugin, make_config, agent, version):
    """The runtime caches our result in its version; the agent always reads 1.1.0."""
    add = run_plugin(make_config(version))
    run = run_plugin(make_config(version, prevResult=add.json), CNI_COMMAND="CHECK")
    assert run.rc == 0, run.stdout
    assert run.stdout == ""
    prev = agent.requests[1]["config"]["prevResult"]
    assert prev["cniVersion"] == "1.1.0"
    assert [ip["address"] for ip in prev["ips"]] == ["10.244.1.2/24", "fd00:10:244:1::2/64"]
    assert all("version" not in ip for ip in prev["ips"])
    assert agent.requests[1]["config"]["cniVersion"] == version


@pytest.mark.parametrize("version", ALL)
def test_add_then_del_in_every_version(run_plugin, make_config, agent, version):
    add = run_plugin(make_config(version))
    assert add.rc == 0
    assert add.json["cniVersion"] == version
    conf = make_config(version, prevResult=add.json)
    assert run_plugin(conf, CNI_COMMAND="DEL").rc == 0
    assert [r["command"] for r in agent.requests] == ["ADD", "DEL"]
