"""A persistent OVSDB JSON-RPC (RFC 7047) connection for the per-pod port changes.

Why next to `ovsconfig` (one ``ovs-vsctl`` per transaction): a CNI ADD used to cost two
``ovs-vsctl`` processes (add-port, waiting for ovs-vswitchd; then a read of the ofport), each
forked from the agent and each downloading the schema and the tables it touches, on a 2-CPU
node competing with the ``ovs-ofctl`` bundle of the same ADD. Over one held connection a
transaction is a single round trip, and a monitor on the Interface table tells the agent the
moment ovs-vswitchd has attached the port (it writes ``ofport``), so nothing is read back.

Scope: adding a pod port (with ``ofport_request`` and ``external_ids``), deleting a port and
reading one interface's ofport. Each is still ONE OVSDB transaction. Everything else (bridge
set-up, rounds) keeps using ``ovs-vsctl``, which also stays the fallback whenever this
connection is unavailable (`OvsdbUnavailable`): callers retry there.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from antrea.ovs.errors import OvsError

log = structlog.get_logger(__name__)

DATABASE = "Open_vSwitch"
MAX_BUFFER = 64 << 20  # a peer that sends more than this without a complete message is broken


class OvsdbUnavailable(OvsError):
    """No usable connection (not connected, lost, or a precondition to fall back on)."""


class OvsdbTransactionError(OvsError):
    """ovsdb-server rejected a transaction: nothing of it was applied."""


@dataclass(slots=True)
class _Iface:
    name: str
    ofport: int | None  # None: not assigned yet (empty set)
    error: str


def _atom_int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    return None  # ["set", []]


def _atom_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 2 and value[0] == "set" and value[1]:
        return str(value[1][0])
    return ""


def _map(values: Mapping[str, str]) -> list[Any]:
    return ["map", [[k, v] for k, v in sorted(values.items())]]


class OvsdbConnection:
    """One JSON-RPC session with ovsdb-server on a unix socket, plus an Interface monitor."""

    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._ifaces: dict[str, _Iface] = {}  # by row uuid
        self._waiters: dict[str, list[asyncio.Future[_Iface]]] = {}
        self._connecting: asyncio.Lock | None = None
        self.transactions = 0

    @property
    def connected(self) -> bool:
        return self._task is not None and not self._task.done()

    async def connect(self) -> None:
        """Open the socket and start the monitor (idempotent; raises `OvsdbUnavailable`)."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.connected:
                return
            try:
                async with asyncio.timeout(self.timeout):
                    self._reader, self._writer = await asyncio.open_unix_connection(self.path)
            except (OSError, TimeoutError) as exc:
                raise OvsdbUnavailable(f"cannot connect to {self.path}: {exc!r}") from exc
            self._ifaces.clear()
            self._task = asyncio.create_task(self._read_loop(self._reader))
            initial = await self.call(
                "monitor",
                [
                    DATABASE,
                    "antrea-ifaces",
                    {"Interface": {"columns": ["name", "ofport", "error"]}},
                ],
            )
            self._apply_updates(initial)
            log.info("ovsdb_connected", path=self.path, interfaces=len(self._ifaces))

    async def close(self) -> None:
        task, self._task = self._task, None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._fail_all(OvsdbUnavailable("connection closed"))

    # -- wire ----------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        if self._writer is None or not self.connected:
            raise OvsdbUnavailable("not connected")
        self._writer.write(json.dumps(msg, separators=(",", ":")).encode())

    async def call(self, method: str, params: list[Any]) -> Any:
        """One request; its ``result`` (raises `OvsdbTransactionError` on an ``error``)."""
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[msg_id] = fut
        try:
            self._send({"method": method, "params": params, "id": msg_id})
            async with asyncio.timeout(self.timeout):
                return await fut
        except TimeoutError as exc:
            # Unknown outcome: drop the session so nobody trusts its state.
            await self.close()
            raise OvsdbUnavailable(f"{method} timed out") from exc
        finally:
            self._calls.pop(msg_id, None)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")()
        buf = ""
        reason: BaseException = OvsdbUnavailable("connection to ovsdb-server lost")
        try:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                buf += text.decode(chunk)
                pos = 0
                while True:
                    while pos < len(buf) and buf[pos] in " \t\r\n":
                        pos += 1
                    if pos >= len(buf):
                        break
                    try:
                        msg, pos = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError:
                        break  # incomplete: wait for more bytes
                    self._dispatch(msg)
                buf = buf[pos:]
                if len(buf) > MAX_BUFFER:
                    reason = OvsdbUnavailable("oversized or malformed message from ovsdb-server")
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in dispatch must not leave callers hanging
            log.warning("ovsdb_reader_failed", error=repr(exc))
            reason = OvsdbUnavailable(f"reader failed: {exc!r}")
        finally:
            self._fail_all(reason)
            if self._writer is not None:
                self._writer.close()
        log.info("ovsdb_disconnected", path=self.path)

    def _fail_all(self, exc: BaseException) -> None:
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(exc)
        for futs in self._waiters.values():
            for w in futs:
                if not w.done():
                    w.set_exception(exc)
        self._waiters.clear()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "update":
            params = msg.get("params") or [None, {}]
            self._apply_updates(params[1])
        elif method == "echo":  # the server's keepalive probe
            with contextlib.suppress(OvsdbUnavailable):
                self._send({"result": msg.get("params", []), "error": None, "id": msg.get("id")})
        elif method is None:
            fut = self._calls.get(msg.get("id"))  # type: ignore[arg-type]
            if fut is None or fut.done():
                return
            if msg.get("error") is not None:
                fut.set_exception(OvsdbTransactionError(str(msg["error"])))
            else:
                fut.set_result(msg.get("result"))

    def _apply_updates(self, updates: Any) -> None:
        for uuid, change in (updates or {}).get("Interface", {}).items():
            new = change.get("new")
            if new is None:
                self._ifaces.pop(uuid, None)
                for w in self._waiters.pop(uuid, []):
                    if not w.done():
                        w.set_exception(OvsdbTransactionError("interface deleted"))
                continue
            old = self._ifaces.get(uuid)
            row = _Iface(
                name=str(new.get("name", old.name if old else "")),
                ofport=_atom_int(new["ofport"])
                if "ofport" in new
                else (old.ofport if old else None),
                error=_atom_str(new["error"]) if "error" in new else (old.error if old else ""),
            )
            self._ifaces[uuid] = row
            if row.ofport is not None:
                for w in self._waiters.pop(uuid, []):
                    if not w.done():
                        w.set_result(row)

    # -- transactions --------------------------------------------------------------------
    async def transact(self, *ops: dict[str, Any]) -> list[Any]:
        """ONE OVSDB transaction; the per-operation results (raises if any failed)."""
        result = await self.call("transact", [DATABASE, *ops])
        self.transactions += 1
        if not isinstance(result, list):
            raise OvsdbTransactionError(f"unexpected transact reply {result!r}")
        errors = [r for r in result if isinstance(r, dict) and r.get("error")]
        if errors:
            raise OvsdbTransactionError(
                "; ".join(f"{e['error']}: {e.get('details', '')}" for e in errors)
            )
        return result

    async def add_port(
        self,
        bridge: str,
        port: str,
        *,
        ofport_request: int | None = None,
        external_ids: Mapping[str, str] | None = None,
    ) -> int:
        """Add a new port + interface to `bridge`; returns the ofport once ovs-vswitchd set it
        (-1 if it could not attach the interface, like ``ofport`` itself).

        Raises `OvsdbUnavailable` if the port already exists (the caller falls back to
        ``ovs-vsctl --may-exist``, which keeps it) or the connection is not usable.
        """
        if not self.connected:
            raise OvsdbUnavailable("not connected")
        iface: dict[str, Any] = {"name": port, "external_ids": _map(external_ids or {})}
        if ofport_request is not None:
            iface["ofport_request"] = ofport_request
        ops = [
            _wait_rows("Bridge", bridge, [{"name": bridge}]),
            _wait_rows("Port", port, []),
            {"op": "insert", "table": "Interface", "row": iface, "uuid-name": "iface"},
            {
                "op": "insert",
                "table": "Port",
                "row": {"name": port, "interfaces": ["named-uuid", "iface"]},
                "uuid-name": "port",
            },
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [["name", "==", bridge]],
                "mutations": [["ports", "insert", ["set", [["named-uuid", "port"]]]]],
            },
        ]
        try:
            result = await self.transact(*ops)
        except OvsdbTransactionError as exc:
            if "timed out" in str(exc):  # a wait op failed: the port exists or no bridge
                raise OvsdbUnavailable(f"add {port}: precondition failed ({exc})") from exc
            raise
        uuid = str(result[2]["uuid"][1])
        row = self._ifaces.get(uuid)
        if row is None or row.ofport is None:
            fut: asyncio.Future[_Iface] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(uuid, []).append(fut)
            try:
                async with asyncio.timeout(self.timeout):
                    row = await fut
            except TimeoutError as exc:
                raise OvsdbTransactionError(f"ovs-vswitchd did not attach {port}") from exc
        if row.ofport is None or row.ofport <= 0:
            log.warning("ovs_port_not_attached", port=port, error=row.error)
            return -1
        return row.ofport

    async def del_port(self, bridge: str, port: str) -> bool:
        """Remove `port` from `bridge` (its Port/Interface rows go with it). Idempotent."""
        rows = await self.transact(
            {"op": "select", "table": "Port", "where": [["name", "==", port]], "columns": ["_uuid"]}
        )
        found = rows[0].get("rows") or []
        if not found:
            return False
        uuid = found[0]["_uuid"]
        await self.transact(
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [["name", "==", bridge]],
                "mutations": [["ports", "delete", ["set", [uuid]]]],
            }
        )
        return True

    async def interface_ofport(self, name: str) -> int:
        rows = await self.transact(
            {
                "op": "select",
                "table": "Interface",
                "where": [["name", "==", name]],
                "columns": ["ofport"],
            }
        )
        found = rows[0].get("rows") or []
        if not found:
            return -1
        ofport = _atom_int(found[0].get("ofport"))
        return ofport if ofport is not None else -1


def _wait_rows(table: str, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A precondition: the rows named `name` are exactly `rows` (fails the transaction)."""
    return {
        "op": "wait",
        "table": table,
        "where": [["name", "==", name]],
        "columns": ["name"],
        "until": "==",
        "rows": rows,
        "timeout": 0,
    }
