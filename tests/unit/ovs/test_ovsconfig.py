"""OVSDB commands are values; a transaction is ONE ovs-vsctl invocation."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from antrea.ovs import ovsconfig
from antrea.ovs.ovsconfig import OvsdbClient, decode_table


def test_port_commands_carry_interface_settings_in_the_same_transaction() -> None:
    cmds = ovsconfig.add_port(
        "br-int",
        "tun0",
        iface_type="vxlan",
        ofport_request=1,
        options={"key": "flow", "remote_ip": "flow"},
        external_ids={"ip-address": "10.0.0.1", "pod-name": "my pod"},
    )
    assert [c.args[:3] for c in cmds] == [
        ("--may-exist", "add-port", "br-int"),
        ("set", "Interface", "tun0"),
    ]
    settings = cmds[1].args[3:]
    assert "type=vxlan" in settings and "ofport_request=1" in settings
    assert "options:key=flow" in settings and "options:remote_ip=flow" in settings
    assert 'external_ids:ip-address="10.0.0.1"' in settings
    assert 'external_ids:pod-name="my pod"' in settings


async def test_transaction_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    client = OvsdbClient("unix:/x/db.sock")

    async def fake_run(argv: list[str]) -> str:
        calls.append(argv)
        return ""

    monkeypatch.setattr(client, "_run", fake_run)
    await client.transact(
        [*ovsconfig.add_bridge("br-int", datapath_type="netdev"), ovsconfig.del_port("br-int", "p")]
    )
    assert len(calls) == 1
    argv = calls[0]
    assert argv[:2] == ["ovs-vsctl", "--db=unix:/x/db.sock"]
    assert argv.count("--") == 4
    assert "set-fail-mode" in argv and "del-port" in argv


def test_decode_ovsdb_json() -> None:
    doc = {
        "headings": ["name", "ofport", "external_ids", "options", "type"],
        "data": [
            [
                "gw0",
                2,
                ["map", [["antrea-type", "gateway"]]],
                ["map", []],
                "internal",
            ],
            ["x", ["set", []], ["map", []], ["map", [["key", "flow"]]], ""],
        ],
    }
    rows = decode_table(json.dumps(doc))
    assert rows[0] == {
        "name": "gw0",
        "ofport": 2,
        "external_ids": {"antrea-type": "gateway"},
        "options": {},
        "type": "internal",
    }
    assert rows[1]["ofport"] == [] and rows[1]["options"] == {"key": "flow"}


async def test_batcher_merges_concurrent_transactions_and_isolates_failures() -> None:
    import asyncio

    from antrea.ovs.errors import VsctlError

    runs: list[list[str]] = []

    class Client:
        async def transact(
            self, commands: Sequence[ovsconfig.Command], *, wait: bool = True
        ) -> str:
            runs.append([str(c) for c in commands])
            if any("bad" in str(c) for c in commands):
                raise VsctlError(["ovs-vsctl"], 1, "no such port")
            return ""

    b = ovsconfig.OvsdbClient("tcp:127.0.0.1:1", rpc=False)
    b.transact = Client().transact  # type: ignore[method-assign]
    await asyncio.gather(*(b.batcher.submit([ovsconfig.del_port("br", f"p{i}")]) for i in range(5)))
    assert len(runs) <= 2  # the first alone, the other four merged
    runs.clear()
    results = await asyncio.gather(
        b.batcher.submit([ovsconfig.del_port("br", "x")]),
        b.batcher.submit([ovsconfig.del_port("br", "bad")]),
        b.batcher.submit([ovsconfig.del_port("br", "y")]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], VsctlError)
