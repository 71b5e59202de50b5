"""The wire helpers both sides use (the agent's CNI server decodes with decode_request)."""

from __future__ import annotations

import json

import pytest

from antrea.apis.cni import protocol
from antrea.apis.cni.errors import CniError


def _request(**change):
    line = protocol.encode_request(
        command="ADD", container_id="c1", netns="/x", ifname="eth0", args="", path="",
        config={"cniVersion": "1.0.0", "name": "antrea", "type": "antrea"},
    )  # fmt: skip
    doc = json.loads(line)
    doc.update(change)
    return json.dumps(doc).encode() + b"\n"


def test_request_round_trip():
    line = _request()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    req = protocol.decode_request(line)
    assert req["version"] == protocol.PROTOCOL_VERSION
    assert req["command"] == "ADD"
    assert req["config"]["name"] == "antrea"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", 201),
        (b"[]", 201),
        (_request(version=2), 202),
        (_request(command="VERSION"), 201),
        (_request(netns=5), 201),
        (_request(config=[]), 201),
    ],
)
def test_malformed_requests_are_rejected(line, code):
    with pytest.raises(CniError) as err:
        protocol.decode_request(line)
    assert err.value.code == code


def test_result_and_error_round_trip():
    assert protocol.decode_response(protocol.encode_result({"ips": []})) == {"ips": []}
    with pytest.raises(CniError) as err:
        protocol.decode_response(protocol.encode_error(101, "no free address", "10.0.0.0/30"))
    assert (err.value.code, err.value.msg, err.value.details) == (
        101,
        "no free address",
        "10.0.0.0/30",
    )


def test_error_json_leaves_out_empty_details():
    assert CniError(4, "m").to_json("1.0.0") == {"cniVersion": "1.0.0", "code": 4, "msg": "m"}
