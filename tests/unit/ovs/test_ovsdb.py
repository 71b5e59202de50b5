"""The JSON-RPC OVSDB client against a scripted ovsdb-server on a unix socket.

The fake speaks the wire protocol (concatenated JSON objects, split at arbitrary byte
boundaries), answers ``monitor`` with the current Interface rows and ``transact`` for the
operations the client sends, and plays ovs-vswitchd by filling ``ofport`` after a commit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from antrea.ovs import ovsconfig
from antrea.ovs.ovsdb import OvsdbConnection, OvsdbTransactionError, OvsdbUnavailable


class FakeServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.ports: dict[str, str] = {}  # port name -> interface uuid
        self.ifaces: dict[str, dict[str, Any]] = {}  # uuid -> row
        self.bridges = {"br-int"}
        self.transactions: list[list[dict[str, Any]]] = []
        self.attach = True  # play ovs-vswitchd: assign ofports
        self.requested: dict[str, int | None] = {}
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None
        self._n = 0

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _uuid(self) -> str:
        self._n += 1
        return f"00000000-0000-0000-0000-{self._n:012d}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        dec = json.JSONDecoder()
        buf = ""

        def send(msg: dict[str, Any]) -> None:
            data = json.dumps(msg).encode()
            # split every message in two writes: the client must reassemble
            writer.write(data[: len(data) // 2])
            writer.write(data[len(data) // 2 :])

        # an echo probe first, like ovsdb-server's inactivity probe
        send({"method": "echo", "params": [], "id": "echo"})
        while chunk := await reader.read(4096):
            buf += chunk.decode()
            while buf.strip():
                try:
                    msg, end = dec.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                buf = buf.lstrip()[end:]
                if msg.get("id") == "echo":
                    continue
                method, params, mid = msg["method"], msg["params"], msg["id"]
                if method == "monitor":
                    rows = {u: {"new": r} for u, r in self.ifaces.items()}
                    send({"id": mid, "result": {"Interface": rows}, "error": None})
                elif method == "transact":
                    result, updates = self._transact(params[1:])
                    send({"id": mid, "result": result, "error": None})
                    for upd in updates:
                        send({"method": "update", "params": ["antrea-ifaces", upd], "id": None})
                    if self.attach:
                        for upd in updates:
                            for uuid, ch in upd["Interface"].items():
                                if ch.get("new") is not None:
                                    ofport = self.requested.get(uuid) or 3 + len(self.ifaces)
                                    self.ifaces[uuid]["ofport"] = ofport
                                    new = {**self.ifaces[uuid]}
                                    upd2 = {"Interface": {uuid: {"new": new}}}
                                    params = ["antrea-ifaces", upd2]
                                    send({"method": "update", "params": params, "id": None})
                await writer.drain()

    def _transact(self, ops: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
        self.transactions.append(ops)
        result: list[Any] = []
        named: dict[str, str] = {}
        updates: list[dict[str, Any]] = []
        for op in ops:
            kind, table = op["op"], op["table"]
            name = op.get("where", [[None, None, None]])[0][2] if op.get("where") else None
            if kind == "wait":
                present = name in (self.bridges if table == "Bridge" else self.ports)
                if present != bool(op["rows"]):
                    return [*result, {"error": "timed out", "details": ""}], []
                result.append({})
            elif kind == "insert":
                uuid = self._uuid()
                named[op["uuid-name"]] = uuid
                if table == "Interface":
                    row = {"name": op["row"]["name"], "ofport": ["set", []], "error": ["set", []]}
                    self.ifaces[uuid] = row
                    self.requested[uuid] = op["row"].get("ofport_request")
                    updates.append({"Interface": {uuid: {"new": dict(row)}}})
                else:
                    self.ports[op["row"]["name"]] = named[op["row"]["interfaces"][1]]
                result.append({"uuid": ["uuid", uuid]})
            elif kind == "select" and table == "Port":
                rows = [{"_uuid": ["uuid", "p-" + name]}] if name in self.ports else []
                result.append({"rows": rows})
            elif kind == "select" and table == "Interface":
                rows = [{"ofport": r["ofport"]} for r in self.ifaces.values() if r["name"] == name]
                result.append({"rows": rows})
            elif kind == "mutate":
                (_col, how, value) = op["mutations"][0]
                if how == "delete":
                    port = value[1][0][1].removeprefix("p-")
                    uuid = self.ports.pop(port)
                    del self.ifaces[uuid]
                    updates.append({"Interface": {uuid: {"old": {"name": port}}}})
                result.append({"count": 1})
        return result, updates


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    srv = FakeServer(tmp_path / "db.sock")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_add_port_is_one_transaction_and_waits_for_the_ofport(server: FakeServer) -> None:
    conn = OvsdbConnection(str(server.path), timeout=2)
    await conn.connect()
    try:
        ofport = await conn.add_port("br-int", "pod-1", ofport_request=7, external_ids={"a": "b"})
        assert ofport == 7
        assert len(server.transactions) == 1
        ops = server.transactions[0]
        assert [o["op"] for o in ops] == ["wait", "wait", "insert", "insert", "mutate"]
        assert ops[2]["row"]["external_ids"] == ["map", [["a", "b"]]]
        assert await conn.interface_ofport("pod-1") == 7
        assert await conn.interface_ofport("nope") == -1
        assert await conn.del_port("br-int", "pod-1") is True
        assert await conn.del_port("br-int", "pod-1") is False  # idempotent
        assert server.ports == {}
    finally:
        await conn.close()


async def test_existing_port_or_missing_bridge_is_a_fallback_case(server: FakeServer) -> None:
    conn = OvsdbConnection(str(server.path), timeout=2)
    await conn.connect()
    try:
        await conn.add_port("br-int", "pod-1", ofport_request=3)
        with pytest.raises(OvsdbUnavailable):
            await conn.add_port("br-int", "pod-1", ofport_request=3)
        with pytest.raises(OvsdbUnavailable):
            await conn.add_port("br-nope", "pod-2", ofport_request=4)
    finally:
        await conn.close()


async def test_unattached_port_times_out_and_a_lost_server_fails_waiters(
    server: FakeServer,
) -> None:
    server.attach = False
    conn = OvsdbConnection(str(server.path), timeout=0.3)
    await conn.connect()
    with pytest.raises(OvsdbTransactionError):
        await conn.add_port("br-int", "pod-1", ofport_request=3)
    conn.timeout = 5
    task = asyncio.create_task(conn.add_port("br-int", "pod-2", ofport_request=4))
    await asyncio.sleep(0.1)
    await server.stop()
    with pytest.raises(OvsdbUnavailable):
        await task
    await asyncio.sleep(0.05)
    assert not conn.connected
    await conn.close()


async def test_client_falls_back_to_vsctl_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No socket: the same operation goes through ONE ovs-vsctl transaction."""
    client = ovsconfig.OvsdbClient(f"unix:{tmp_path}/missing.sock")
    calls: list[list[str]] = []

    async def fake_run(argv: list[str]) -> str:
        calls.append(argv)
        if "--format=json" in argv:
            return json.dumps({"headings": ["name", "ofport"], "data": [["pod-1", 5]]})
        return ""

    monkeypatch.setattr(client, "_run", fake_run)
    assert await client.attach_port("br-int", "pod-1", ofport_request=5) == 5
    assert "add-port" in calls[0] and "ofport_request=5" in calls[0]
    await client.remove_port("br-int", "pod-1")
    assert "del-port" in calls[-1]
    await client.close()


async def test_client_uses_the_connection_when_there_is_one(server: FakeServer) -> None:
    client = ovsconfig.OvsdbClient(f"unix:{server.path}")
    try:
        assert await client.attach_port("br-int", "pod-9", ofport_request=9) == 9
        assert await client.interface_ofport("pod-9") == 9
        await client.remove_port("br-int", "pod-9")
        assert server.ports == {}
        assert client.rpc is not None and client.rpc.transactions == 4
    finally:
        await client.close()


async def test_client_reconnects_after_ovsdb_server_restarts(tmp_path: Path) -> None:
    """A lost session is replaced on the next operation; meanwhile nothing hangs."""
    path = tmp_path / "db.sock"
    first = FakeServer(path)
    await first.start()
    client = ovsconfig.OvsdbClient(f"unix:{path}")
    try:
        assert await client.attach_port("br-int", "pod-1", ofport_request=3) == 3
        await first.stop()
        path.unlink(missing_ok=True)
        for _ in range(100):  # the reader notices EOF
            if client.rpc is None or not client.rpc.connected:
                break
            await asyncio.sleep(0.01)
        second = FakeServer(path)
        await second.start()
        try:
            assert await client.attach_port("br-int", "pod-2", ofport_request=4) == 4
            assert list(second.ports) == ["pod-2"]
        finally:
            await second.stop()
    finally:
        await client.close()
