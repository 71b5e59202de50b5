"""A held OpenFlow 1.5 connection per bridge: the native `FlowTransport`.

One unix-socket connection to the bridge's management socket (``unix:<rundir>/<br>.mgmt``),
opened on first use and kept. Each `bundle` call is ONE atomic OpenFlow bundle, exactly what
``ovs-ofctl --bundle add-flows`` sends, but encoded by `wire` from the flow values and without a
process or text on the way:

1. ``BUNDLE_CONTROL OPEN`` (atomic, ordered), one ``BUNDLE_ADD_MESSAGE`` per flow mod (deletes,
   then modifies, then adds; each with its own xid; written in chunks as they are encoded, so
   the switch parses while we encode), then a barrier;
2. if the switch refused any message (each error carries the xid of its message, mapped back to
   the flow) or a flow cannot be encoded (too big for one message), the bundle is discarded
   and `BundleRejected` names the offending flows; otherwise ``COMMIT`` and its reply (a
   commit-time error is mapped the same way).

The connection is lost when ovs-vswitchd restarts: the next call reconnects (a few retries with
backoff) and resends the whole bundle, which is safe because every operation in it is
idempotent (add replaces, modify_strict/delete_strict of a missing flow do nothing). After a
*re*connection, `on_reconnect` runs in a task: the agent replays every flow from its cache
there, since a restarted ovs-vswitchd has empty tables.

Echo requests are answered; any other unsolicited message is ignored.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import structlog

from antrea.errors import AntreaError
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.render import render_flow
from antrea.ovs.openflow.wire import (
    BundleCtrl,
    EncodeError,
    FlowEncoder,
    FlowModCommand,
    GroupCommand,
    MsgType,
    barrier,
    bundle_add,
    bundle_control,
    echo_reply,
    error_text,
    group_mod,
    hello,
    parse_error,
    parse_header,
)

log = structlog.get_logger(__name__)

ReconnectHook = Callable[[], Awaitable[None]]
# The messages of one bundle (bundle id, first xid): each yield is bundle-add messages with
# consecutive xids and what each is about (for errors). A generator: encoding is streamed to
# the switch, which works on one chunk while the next is encoded.
Builder = Callable[[int, int], Iterator[tuple[bytes, Sequence[object]]]]
CHUNK = 1024  # flow mods per encoding call and per write
# what encoding a flow can raise: too big, a value out of range for its field
_ENCODE_ERRORS = (EncodeError, ValueError, KeyError, OverflowError, struct.error)


class _Refused(AntreaError):
    """A message of the bundle cannot be encoded (the text names it)."""


class OpenFlowError(AntreaError):
    def __init__(self, etype: int, code: int, data: bytes = b"") -> None:
        self.etype = etype
        self.code = code
        self.data = data
        super().__init__(error_text(etype, code))


class OpenFlowTransport:
    """`FlowTransport` over one held OpenFlow 1.5 connection to a bridge."""

    def __init__(
        self,
        target: str,
        *,
        on_reconnect: ReconnectHook | None = None,
        attempts: int = 8,
        timeout: float = 60.0,
    ) -> None:
        if not target.startswith("unix:"):
            raise ValueError(f"only unix: targets are supported, not {target!r}")
        self.target = target
        self.path = target[len("unix:") :]
        self.on_reconnect = on_reconnect
        self.attempts = attempts
        self.timeout = timeout
        self.encoder = FlowEncoder()
        self.bundles_applied = 0
        self.connects = 0
        self.last_duration_s = 0.0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._errors: dict[int, OpenFlowError] = {}
        self._xid = itertools.count(1)
        self._bundle_id = itertools.count(1)
        self._lock = asyncio.Lock()
        self._hooks: set[asyncio.Task[None]] = set()
        self._redial: asyncio.Task[None] | None = None
        self._closed = False

    # -- connection -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._writer is not None and self._task is not None and not self._task.done()

    async def _connect(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        try:
            writer.write(hello(next(self._xid)))
            await writer.drain()
            hdr = await asyncio.wait_for(reader.readexactly(8), 10)
            version, mtype, length, _ = parse_header(hdr)
            body = await reader.readexactly(length - 8)
            if mtype == MsgType.ERROR:
                raise OpenFlowError(*parse_error(body))
            if mtype != MsgType.HELLO or version < 0x06:
                raise ConnectionError(f"{self.target}: no OpenFlow 1.5 hello (got {mtype})")
        except BaseException:
            writer.close()
            raise
        self._reader, self._writer = reader, writer
        self._task = asyncio.create_task(self._read_loop(reader, writer))
        self.connects += 1
        log.debug("openflow_connected", target=self.target, connects=self.connects)
        if self.connects > 1 and self.on_reconnect is not None:
            hook = asyncio.create_task(self._run_hook(self.on_reconnect))
            self._hooks.add(hook)
            hook.add_done_callback(self._hooks.discard)

    async def _run_hook(self, hook: ReconnectHook) -> None:
        try:
            await hook()
        except Exception as exc:
            log.warning("openflow_reconnect_hook_failed", target=self.target, error=repr(exc))

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        exc: BaseException = ConnectionError(f"{self.target}: connection closed")
        try:
            while True:
                hdr = await reader.readexactly(8)
                _, mtype, length, xid = parse_header(hdr)
                body = await reader.readexactly(length - 8) if length > 8 else b""
                if mtype == MsgType.ECHO_REQUEST:
                    writer.write(echo_reply(xid, body))
                    continue
                fut = self._waiters.pop(xid, None)
                if mtype == MsgType.ERROR:
                    err = OpenFlowError(*parse_error(body))
                    if fut is not None and not fut.done():
                        fut.set_exception(err)
                    else:
                        self._errors[xid] = err
                elif fut is not None and not fut.done():
                    fut.set_result((mtype, body))
        except (asyncio.IncompleteReadError, OSError) as e:
            exc = ConnectionError(f"{self.target}: {e!r}")
            # ovs-vswitchd went away (restart): reconnect in the background, so the reconnect
            # hook (flow replay) runs as soon as it is back, not only at the next bundle
            if not self._closed and self._redial is None:
                self._redial = asyncio.create_task(self._reconnect())
        except asyncio.CancelledError:
            exc = ConnectionError(f"{self.target}: closed")
            raise
        finally:
            for fut in self._waiters.values():
                if not fut.done():
                    fut.set_exception(exc)
            self._waiters.clear()
            writer.close()

    def _drop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = self._task = None

    async def _reconnect(self) -> None:
        delay = 0.05
        try:
            while not self._closed:
                await asyncio.sleep(delay)
                async with self._lock:
                    if self.connected or self._closed:
                        return
                    try:
                        self._drop()
                        await self._connect()
                        return
                    except (ConnectionError, OSError, TimeoutError, OpenFlowError) as exc:
                        log.debug("openflow_redial_failed", target=self.target, error=repr(exc))
                delay = min(delay * 2, 2.0)
        finally:
            self._redial = None

    async def close(self) -> None:
        self._closed = True
        if self._redial is not None:
            self._redial.cancel()
        task = self._task
        self._drop()
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, ConnectionError):
                pass
        for hook in list(self._hooks):
            hook.cancel()

    def _expect(self, xid: int) -> asyncio.Future[tuple[int, bytes]]:
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiters[xid] = fut
        return fut

    async def _send(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise ConnectionError(f"{self.target}: not connected")
        writer.write(data)
        await writer.drain()

    # -- FlowTransport ----------------------------------------------------------------------
    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        if not add and not modify and not delete and not set_groups and not delete_groups:
            return
        summary = f"{len(add)} adds, {len(modify)} modifies, {len(delete)} deletes"
        if not set_groups and not delete_groups:
            await self._transact(self._flow_messages(add, modify, delete), summary)
            return
        flows = self._flow_messages(add, modify, delete)

        def build(bundle_id: int, base: int) -> Iterator[tuple[bytes, Sequence[object]]]:
            # groups first (flows point at them), group deletes last
            xid = base
            for g in set_groups:
                yield _group_add(g, GroupCommand.ADD_OR_MOD, bundle_id, xid)
                xid += 1
            n = len(add) + len(modify) + len(delete)
            yield from flows(bundle_id, xid)
            xid += n
            for g in delete_groups:
                yield _group_add(g, GroupCommand.DELETE, bundle_id, xid)
                xid += 1

        groups = f", {len(set_groups)} groups set, {len(delete_groups)} deleted"
        await self._transact(build, summary + groups)

    async def groups(
        self,
        *,
        add: Sequence[Group] = (),
        modify: Sequence[Group] = (),
        delete: Sequence[Group] = (),
    ) -> None:
        """Group mods, as one atomic bundle (deletes, modifies, adds)."""
        if not add and not modify and not delete:
            return

        def build(bundle_id: int, base: int) -> Iterator[tuple[bytes, Sequence[object]]]:
            xid = base
            for cmd, groups in (
                (GroupCommand.DELETE, delete),
                (GroupCommand.MODIFY, modify),
                (GroupCommand.ADD, add),
            ):
                for g in groups:
                    yield _group_add(g, cmd, bundle_id, xid)
                    xid += 1

        await self._transact(build, f"{len(add) + len(modify) + len(delete)} group mods")

    def _flow_messages(
        self, add: Sequence[Flow], modify: Sequence[Flow], delete: Sequence[Flow]
    ) -> Builder:
        def build(bundle_id: int, base: int) -> Iterator[tuple[bytes, Sequence[object]]]:
            encode = self.encoder.bundle_adds
            xid = base
            for cmd, flows in (
                (FlowModCommand.DELETE_STRICT, delete),
                (FlowModCommand.MODIFY_STRICT, modify),
                (FlowModCommand.ADD, add),
            ):
                for i in range(0, len(flows), CHUNK):
                    chunk = flows[i : i + CHUNK]
                    try:
                        data = encode(chunk, cmd, bundle_id, xid)
                    except _ENCODE_ERRORS as exc:
                        raise self._refused(chunk, cmd, exc) from exc
                    yield data, chunk
                    xid += len(chunk)

        return build

    def _refused(self, flows: Sequence[Flow], cmd: FlowModCommand, exc: Exception) -> _Refused:
        """The error naming the flow of ``flows`` that cannot be encoded (found one by one)."""
        for f in flows:
            try:
                bundle_add(0, 0, self.encoder.flow_mod(f, cmd, 0))
            except _ENCODE_ERRORS as e:
                return _Refused(f"{e}: {_describe(f)}")
        return _Refused(str(exc))

    async def _transact(self, build: Builder, summary: str) -> None:
        async with self._lock:
            start = time.perf_counter()
            last: BaseException | None = None
            for attempt in range(self.attempts):
                try:
                    if not self.connected:
                        await self._connect()
                    await asyncio.wait_for(self._bundle_once(build), self.timeout)
                    self.bundles_applied += 1
                    self.last_duration_s = time.perf_counter() - start
                    log.debug(
                        "bundle_applied",
                        what=summary,
                        ms=round(self.last_duration_s * 1000, 2),
                    )
                    return
                except (ConnectionError, OSError, TimeoutError) as exc:
                    last = exc
                    self._drop()
                    log.info(
                        "openflow_connection_retry",
                        target=self.target,
                        attempt=attempt + 1,
                        error=repr(exc),
                    )
                    await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
            raise BundleRejected(
                ["openflow", self.target], None, f"cannot reach the switch: {last!r}"
            )

    async def _bundle_once(self, build: Builder) -> None:
        bundle_id = next(self._bundle_id)
        x_open = next(self._xid)
        base = next(self._xid)
        self._errors = {}
        opened = self._expect(x_open)
        items: list[object] = []
        out = [bundle_control(x_open, bundle_id, BundleCtrl.OPEN_REQUEST)]
        pending = 0
        refused: str | None = None
        try:
            for data, about in build(bundle_id, base):
                items.extend(about)
                out.append(data)
                pending += len(about)
                if pending >= CHUNK:
                    await self._send(b"".join(out))
                    out, pending = [], 0
        except _Refused as exc:
            refused = str(exc)
        if out:
            await self._send(b"".join(out))
        # reserve the xids used (the lock keeps other requests out meanwhile)
        self._xid = itertools.count(base + len(items) + 1)
        if refused is not None:
            await self._discard(bundle_id)
            opened.cancel()
            self._waiters.pop(x_open, None)
            raise BundleRejected(["openflow", self.target], None, refused)
        x_barrier = next(self._xid)
        fenced = self._expect(x_barrier)
        await self._send(barrier(x_barrier))
        try:
            await opened
        except OpenFlowError as exc:
            fenced.cancel()
            self._waiters.pop(x_barrier, None)
            raise BundleRejected(["openflow", self.target], None, f"bundle open: {exc}") from exc
        await fenced
        failed = self._failures(base, items)
        if failed:
            await self._discard(bundle_id)
            raise BundleRejected(["openflow", self.target], None, "; ".join(failed))
        x_commit = next(self._xid)
        committed = self._expect(x_commit)
        await self._send(bundle_control(x_commit, bundle_id, BundleCtrl.COMMIT_REQUEST))
        try:
            await committed
        except OpenFlowError as exc:
            failed = self._failures(base, items) or [f"bundle commit: {exc}"]
            raise BundleRejected(["openflow", self.target], None, "; ".join(failed)) from exc

    async def _discard(self, bundle_id: int) -> None:
        x_discard = next(self._xid)
        discarded = self._expect(x_discard)
        await self._send(bundle_control(x_discard, bundle_id, BundleCtrl.DISCARD_REQUEST))
        try:
            await discarded
        except OpenFlowError:
            pass  # already gone

    def _failures(self, base: int, items: Sequence[object]) -> list[str]:
        out = []
        for xid, err in sorted(self._errors.items()):
            i = xid - base
            what = _describe(items[i]) if 0 <= i < len(items) else f"xid {xid}"
            out.append(f"{err}: {what}")
        self._errors = {}
        return out

    async def barrier(self) -> None:
        """Wait until the switch processed everything sent so far."""
        async with self._lock:
            if not self.connected:
                await self._connect()
            xid = next(self._xid)
            fut = self._expect(xid)
            await self._send(barrier(xid))
            await asyncio.wait_for(fut, self.timeout)


def _group_add(
    group: Group, command: GroupCommand, bundle_id: int, xid: int
) -> tuple[bytes, Sequence[object]]:
    what = f"group {'add_or_mod' if command is GroupCommand.ADD_OR_MOD else command.name.lower()}"
    try:
        return bundle_add(xid, bundle_id, group_mod(group, command, xid)), [f"{what} {group}"]
    except _ENCODE_ERRORS as exc:
        raise _Refused(f"{exc}: {what} {group}") from exc


def _describe(item: object, limit: int = 300) -> str:
    text = render_flow(item) if isinstance(item, Flow) else str(item)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
