"""OVSDB through `ovs-vsctl`: commands are inert values, a transaction is ONE invocation.

`ovs-vsctl` executes every command of one invocation (``-- cmd1 -- cmd2 ...``) in a single
OVSDB transaction, so building a list of `Command` values and running them together gives the
atomicity of ovsdbapp's transactions. That serves start-up and the rare changes. The per-pod
operations of CNI ADD/DEL are on the hot path: a forked ``ovs-vsctl`` costs several ms of CPU
each on a 2-CPU node, so `OvsdbClient` sends those over a held JSON-RPC connection
(`antrea.ovs.ovsdb`), still one transaction per operation, with ``ovs-vsctl`` as the fallback.

Reads use ``--format=json`` and decode OVSDB's typed values (``["map", ...]``, ``["set", ...]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from antrea.ovs.errors import VsctlError
from antrea.ovs.ovsdb import OvsdbConnection, OvsdbUnavailable
from antrea.util.batcher import Batcher

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Command:
    """One ovs-vsctl command (its words, without the leading ``--``)."""

    args: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join(self.args)


def _kv(prefix: str, values: Mapping[str, str]) -> list[str]:
    return [f"{prefix}:{k}={_quote(v)}" for k, v in sorted(values.items())]


def _quote(value: str) -> str:
    # OVSDB string syntax: quote anything that is not a plain identifier-ish word.
    if value and all(c.isalnum() or c in "-_./:" for c in value) and not value[0].isdigit():
        return value
    return json.dumps(value)


# -- command constructors (values; nothing runs until a transaction) ------------------------
def add_bridge(bridge: str, *, datapath_type: str, fail_secure: bool = True) -> list[Command]:
    cmds = [
        Command(("--may-exist", "add-br", bridge)),
        Command(("set", "Bridge", bridge, f"datapath_type={datapath_type}")),
    ]
    if fail_secure:
        cmds.append(Command(("set-fail-mode", bridge, "secure")))
    return cmds


def add_port(
    bridge: str,
    port: str,
    *,
    iface_type: str = "",
    ofport_request: int | None = None,
    options: Mapping[str, str] | None = None,
    external_ids: Mapping[str, str] | None = None,
    mac: str | None = None,
    may_exist: bool = True,
) -> list[Command]:
    """add-port plus the Interface settings, as commands of the same transaction."""
    head = ("--may-exist",) if may_exist else ()
    cmds = [Command((*head, "add-port", bridge, port))]
    settings: list[str] = []
    if iface_type:
        settings.append(f"type={iface_type}")
    if ofport_request is not None:
        settings.append(f"ofport_request={ofport_request}")
    if mac is not None:
        settings.append(f'mac="{mac}"')
    settings.extend(_kv("options", options or {}))
    settings.extend(_kv("external_ids", external_ids or {}))
    if settings:
        cmds.append(Command(("set", "Interface", port, *settings)))
    return cmds


def del_port(bridge: str, port: str) -> Command:
    return Command(("--if-exists", "del-port", bridge, port))


def set_bridge_external_ids(bridge: str, values: Mapping[str, str]) -> Command:
    return Command(("set", "Bridge", bridge, *_kv("external_ids", values)))


def set_bridge_other_config(bridge: str, values: Mapping[str, str]) -> Command:
    return Command(("set", "Bridge", bridge, *_kv("other_config", values)))


def remove_other_config(table: str, record: str, key: str) -> Command:
    return Command(("remove", table, record, "other_config", key))


# -- decoding ------------------------------------------------------------------------------
def decode_value(value: Any) -> Any:
    """Decode one OVSDB JSON value (atom, set, map, uuid) into Python values."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, body = value
        if kind == "map":
            return {decode_value(k): decode_value(v) for k, v in body}
        if kind == "set":
            return [decode_value(v) for v in body]
        if kind in ("uuid", "named-uuid"):
            return body
    return value


def decode_table(text: str) -> list[dict[str, Any]]:
    """Rows of an ``ovs-vsctl --format=json list/find`` answer as dicts."""
    doc = json.loads(text)
    heads = doc.get("headings", [])
    return [dict(zip(heads, (decode_value(v) for v in row), strict=False)) for row in doc["data"]]


@dataclass
class InterfaceRow:
    name: str
    ofport: int
    type: str
    external_ids: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    mac_in_use: str = ""


class OvsdbClient:
    """Runs transactions and queries against one OVSDB (``unix:<rundir>/db.sock``).

    Generic transactions run through ``ovs-vsctl``. The per-pod operations (`attach_port`,
    `remove_port`, `interface_ofport`) use a held JSON-RPC connection (`antrea.ovs.ovsdb`)
    when the database is a unix socket, and fall back to ``ovs-vsctl`` whenever that
    connection is unavailable; either way one operation is one OVSDB transaction.
    """

    RPC_RETRY_S = 5.0

    def __init__(
        self, db: str, *, vsctl: str = "ovs-vsctl", timeout: int = 10, rpc: bool = True
    ) -> None:
        self.db = db
        self.vsctl = vsctl
        self.timeout = timeout
        self.errors = 0
        self.rpc: OvsdbConnection | None = (
            OvsdbConnection(db.removeprefix("unix:"), timeout=timeout)
            if rpc and db.startswith("unix:")
            else None
        )
        self._rpc_retry_at = 0.0
        # Concurrent ovs-vsctl transactions (the fallback path) share one invocation: every
        # port change makes ovs-vswitchd reconfigure the bridge, and ovs-vsctl waits for that.
        # The merged transaction is atomic; if it fails, its parts are retried one by one.
        self.batcher: Batcher[list[Command]] = Batcher(self._transact_merged)

    async def _connection(self) -> OvsdbConnection | None:
        conn = self.rpc
        if conn is None:
            return None
        if conn.connected:
            return conn
        now = time.monotonic()
        if now < self._rpc_retry_at:
            return None
        try:
            await conn.connect()
        except OvsdbUnavailable as exc:
            self._rpc_retry_at = now + self.RPC_RETRY_S
            log.info("ovsdb_rpc_unavailable_using_vsctl", error=str(exc))
            return None
        return conn

    async def close(self) -> None:
        if self.rpc is not None:
            await self.rpc.close()

    # -- per-pod operations (JSON-RPC, ovs-vsctl fallback) --------------------------------
    async def attach_port(
        self,
        bridge: str,
        port: str,
        *,
        ofport_request: int | None = None,
        external_ids: Mapping[str, str] | None = None,
    ) -> int:
        """Add `port` (``--may-exist``) with its Interface settings in ONE transaction and
        return its ofport once ovs-vswitchd attached it (-1: it could not)."""
        conn = await self._connection()
        if conn is not None:
            try:
                return await conn.add_port(
                    bridge, port, ofport_request=ofport_request, external_ids=external_ids
                )
            except OvsdbUnavailable as exc:
                log.info("ovsdb_rpc_fallback", op="add-port", port=port, reason=str(exc))
        await self.batcher.submit(
            add_port(bridge, port, ofport_request=ofport_request, external_ids=external_ids)
        )
        return await self._vsctl_interface_ofport(port)

    async def remove_port(self, bridge: str, port: str) -> None:
        """``--if-exists del-port``: idempotent."""
        conn = await self._connection()
        if conn is not None:
            try:
                await conn.del_port(bridge, port)
                return
            except OvsdbUnavailable as exc:
                log.info("ovsdb_rpc_fallback", op="del-port", port=port, reason=str(exc))
        await self.batcher.submit([del_port(bridge, port)])

    async def _transact_merged(self, parts: list[list[Command]]) -> None:
        await self.transact([c for cmds in parts for c in cmds])

    async def _run(self, argv: list[str]) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            self.errors += 1
            raise VsctlError(argv, proc.returncode, err.decode(errors="replace"))
        return out.decode()

    def _base(self) -> list[str]:
        return [self.vsctl, f"--db={self.db}", f"--timeout={self.timeout}"]

    async def transact(self, commands: Sequence[Command], *, wait: bool = True) -> str:
        """Apply `commands` in ONE OVSDB transaction (one ovs-vsctl process).

        With `wait`, ovs-vsctl returns once ovs-vswitchd applied the change (ports got their
        ofport), which is what callers that read ofports afterwards need.
        """
        if not commands:
            return ""
        argv = self._base()
        if not wait:
            argv.append("--no-wait")
        for cmd in commands:
            argv.append("--")
            argv.extend(cmd.args)
        out = await self._run(argv)
        log.debug("ovsdb_transaction_applied", commands=[str(c) for c in commands])
        return out

    async def query(self, *args: str) -> list[dict[str, Any]]:
        out = await self._run([*self._base(), "--format=json", *args])
        return decode_table(out)

    async def get(self, table: str, record: str, column: str) -> str:
        out = await self._run([*self._base(), "--if-exists", "get", table, record, column])
        return out.strip()

    # -- typed reads -------------------------------------------------------------------
    async def bridge_exists(self, bridge: str) -> bool:
        proc = await asyncio.create_subprocess_exec(
            *self._base(),
            "br-exists",
            bridge,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return (await proc.wait()) == 0

    async def bridge_external_ids(self, bridge: str) -> dict[str, str]:
        rows = await self.query("--columns=external_ids", "list", "Bridge", bridge)
        ids = rows[0].get("external_ids") if rows else None
        return dict(ids) if isinstance(ids, dict) else {}

    async def bridge_ports(self, bridge: str) -> list[str]:
        out = await self._run([*self._base(), "list-ports", bridge])
        return [line for line in out.splitlines() if line]

    async def interfaces(self, names: Sequence[str] | None = None) -> list[InterfaceRow]:
        """Interfaces (all, or the given ones) with ofport, type, options and external_ids."""
        cols = "--columns=name,ofport,type,external_ids,options,mac_in_use"
        rows = await self.query(cols, "list", "Interface", *(names or ()))
        out = []
        for row in rows:
            ofport = row.get("ofport")
            out.append(
                InterfaceRow(
                    name=str(row.get("name", "")),
                    ofport=ofport if isinstance(ofport, int) else -1,
                    type=str(row.get("type") or ""),
                    external_ids=dict(row.get("external_ids") or {}),
                    options=dict(row.get("options") or {}),
                    mac_in_use=str(row.get("mac_in_use") or ""),
                )
            )
        return out

    async def interface_ofport(self, name: str) -> int:
        conn = await self._connection()
        if conn is not None:
            with contextlib.suppress(OvsdbUnavailable):
                return await conn.interface_ofport(name)
        return await self._vsctl_interface_ofport(name)

    async def _vsctl_interface_ofport(self, name: str) -> int:
        rows = await self.interfaces([name])
        return rows[0].ofport if rows else -1

    async def ovs_version(self) -> str:
        rows = await self.query("--columns=ovs_version", "list", "Open_vSwitch")
        version = rows[0].get("ovs_version") if rows else None
        if isinstance(version, list):  # optional column: empty set when unset
            version = version[0] if version else ""
        return str(version or "")
