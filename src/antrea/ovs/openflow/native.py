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

`stream` opens a *streamed* bundle (`antrea.ovs.openflow.bundle.BundleStream`): the OPEN and
each `add` are written at once (not waiting for the socket to drain, so the caller keeps
planning while ovs-vswitchd parses them), and `commit` finishes it like step 1-2 above: the
rest of the flow mods, the barrier, errors mapped back to the flow over every xid range the
stream used, discard or commit. Other bundles may run on the connection while a stream is
open (each bundle has its own id; an error is kept for the stream whose xid it carries). When
the connection was lost meanwhile (the switch drops a lost connection's open bundles), the switch
dropped the bundle as idle (an error about the OPEN after it succeeded), or an add
could not be encoded, `commit` sends everything as one plain `bundle` instead (reconnecting,
and naming a flow that cannot be encoded).

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
from antrea.ovs.openflow.bundle import BundleStream
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
# the messages of a bundle whose errors are mapped back: (first xid, what each message is about)
Segments = list[tuple[int, Sequence[object]]]
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
        self._streams: set[_Stream] = set()  # streamed bundles open on the connection

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

    def _write(self, data: bytes) -> None:
        """Queue `data` (asyncio writes it as the socket takes it: no waiting here)."""
        writer = self._writer
        if writer is None:
            raise ConnectionError(f"{self.target}: not connected")
        writer.write(data)

    async def _send(self, data: bytes) -> None:
        self._write(data)
        writer = self._writer
        assert writer is not None
        await writer.drain()

    def stream(self) -> BundleStream:
        """A streamed bundle on this connection (see the module doc)."""
        return _Stream(self)

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
        self._forget_errors()
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
        await self._conclude(bundle_id, x_open, opened, [(base, items)], refused)

    async def _conclude(
        self,
        bundle_id: int,
        x_open: int,
        opened: asyncio.Future[tuple[int, bytes]],
        segments: Segments,
        refused: str | None,
    ) -> None:
        """Every message of the bundle is sent: fence, then discard (an error, or `refused`:
        a message could not be encoded) or commit."""
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
        failed = self._failures(segments)
        if failed:
            await self._discard(bundle_id)
            raise BundleRejected(["openflow", self.target], None, "; ".join(failed))
        x_commit = next(self._xid)
        committed = self._expect(x_commit)
        await self._send(bundle_control(x_commit, bundle_id, BundleCtrl.COMMIT_REQUEST))
        try:
            await committed
        except OpenFlowError as exc:
            failed = self._failures(segments) or [f"bundle commit: {exc}"]
            raise BundleRejected(["openflow", self.target], None, "; ".join(failed)) from exc

    async def _discard(self, bundle_id: int) -> None:
        x_discard = next(self._xid)
        discarded = self._expect(x_discard)
        await self._send(bundle_control(x_discard, bundle_id, BundleCtrl.DISCARD_REQUEST))
        try:
            await discarded
        except OpenFlowError:
            pass  # already gone

    def _forget_errors(self) -> None:
        """Drop the errors kept so far, but those of the streams still open."""
        if self._streams:
            self._errors = {
                x: e for x, e in self._errors.items() if any(s.owns(x) for s in self._streams)
            }
        else:
            self._errors = {}

    def _failures(self, segments: Segments) -> list[str]:
        """The errors of the bundle sent as `segments` (and of no other open stream), each
        naming its message; they are consumed."""
        out = []
        errors = self._errors
        for xid, err in sorted(errors.items()):
            for base, items in segments:
                i = xid - base
                if 0 <= i < len(items):
                    what = _describe(items[i])
                    break
            else:
                if any(s.segments is not segments and s.owns(xid) for s in self._streams):
                    continue  # another stream's
                what = f"xid {xid}"
            del errors[xid]
            out.append(f"{err}: {what}")
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


class _Expired(AntreaError):
    """The switch dropped a streamed bundle before its commit (idle timeout)."""


class _Stream:
    """A streamed bundle on an `OpenFlowTransport`'s connection (`OpenFlowTransport.stream`)."""

    def __init__(self, transport: OpenFlowTransport) -> None:
        self.t = transport
        self.staged: list[Flow] = []  # every add, for a resend as a plain bundle
        self.segments: Segments = []  # the messages sent, for errors
        self.bundle_id = 0
        self.connects = 0
        self.x_open = 0
        self.opened: asyncio.Future[tuple[int, bytes]] | None = None
        self.broken = False  # the switch does not have all the adds: commit resends them
        self.closed = False

    def owns(self, xid: int) -> bool:
        return xid == self.x_open or any(
            0 <= xid - base < len(items) for base, items in self.segments
        )

    def _alive(self) -> bool:
        return self.t.connected and self.t.connects == self.connects

    async def add(self, flows: Sequence[Flow]) -> None:
        if self.closed:
            raise RuntimeError("bundle stream already committed or discarded")
        if not flows:
            return
        flows = list(flows)
        self.staged.extend(flows)
        if self.broken:
            return
        t = self.t
        try:
            async with t._lock:
                if self.opened is None:
                    if not t.connected:
                        await t._connect()
                    self.connects = t.connects
                    self.bundle_id = next(t._bundle_id)
                    self.x_open = next(t._xid)
                    self.opened = t._expect(self.x_open)
                    t._streams.add(self)
                    t._write(bundle_control(self.x_open, self.bundle_id, BundleCtrl.OPEN_REQUEST))
                elif not self._alive():
                    self.broken = True
                    return
                encode = t.encoder.bundle_adds
                base = xid = next(t._xid)
                out = []
                for i in range(0, len(flows), CHUNK):
                    chunk = flows[i : i + CHUNK]
                    out.append(encode(chunk, FlowModCommand.ADD, self.bundle_id, xid))
                    xid += len(chunk)
                t._xid = itertools.count(xid)
                self.segments.append((base, flows))
                t._write(b"".join(out))
        except (*_ENCODE_ERRORS, ConnectionError, OSError, TimeoutError, OpenFlowError) as exc:
            log.debug("openflow_stream_broken", target=t.target, error=repr(exc))
            self.broken = True

    async def commit(
        self, *, add: Sequence[Flow] = (), modify: Sequence[Flow] = (), delete: Sequence[Flow] = ()
    ) -> None:
        if self.closed:
            raise RuntimeError("bundle stream already committed or discarded")
        self.closed = True
        t = self.t
        try:
            if self.opened is not None and not self.broken:
                async with t._lock:
                    if self._alive():
                        start = time.perf_counter()
                        try:
                            await asyncio.wait_for(self._finish(add, modify, delete), t.timeout)
                        except _Expired as exc:
                            log.info("openflow_stream_resent", target=t.target, error=str(exc))
                        except (ConnectionError, OSError, TimeoutError) as exc:
                            t._drop()  # (the switch discards the open bundle with it)
                            log.info("openflow_stream_resent", target=t.target, error=repr(exc))
                        else:
                            t.bundles_applied += 1
                            t.last_duration_s = time.perf_counter() - start
                            log.debug(
                                "bundle_applied",
                                what=f"{len(self.staged)} streamed adds, {len(add)} adds, "
                                f"{len(modify)} modifies, {len(delete)} deletes",
                                ms=round(t.last_duration_s * 1000, 2),
                            )
                            return
            elif self.opened is not None:
                await self._drop_bundle()
            # not streamed, or the stream broke: the whole bundle the plain way
            await t.bundle(add=[*self.staged, *add], modify=modify, delete=delete)
        finally:
            self._close()

    async def _finish(
        self, add: Sequence[Flow], modify: Sequence[Flow], delete: Sequence[Flow]
    ) -> None:
        t = self.t
        assert self.opened is not None
        base = next(t._xid)
        items: list[object] = []
        out: list[bytes] = []
        pending = 0
        refused: str | None = None
        try:
            for data, about in t._flow_messages(add, modify, delete)(self.bundle_id, base):
                items.extend(about)
                out.append(data)
                pending += len(about)
                if pending >= CHUNK:
                    await t._send(b"".join(out))
                    out, pending = [], 0
        except _Refused as exc:
            refused = str(exc)
        if out:
            await t._send(b"".join(out))
        t._xid = itertools.count(base + len(items) + 1)
        self.segments.append((base, items))
        # An error about the OPEN after it succeeded: the switch dropped the bundle (idle
        # longer than its bundle-idle-timeout), and the adds sent since then went to a new
        # bundle of the same id: discard that one, and resend everything as a plain bundle.
        x_fence = next(t._xid)
        fenced = t._expect(x_fence)
        await t._send(barrier(x_fence))
        await fenced
        if self.opened.done() and not self.opened.cancelled() and self.opened.exception() is None:
            gone = t._errors.pop(self.x_open, None)
            if gone is not None:
                await t._discard(self.bundle_id)
                raise _Expired(f"streamed bundle dropped by the switch: {gone}")
        await t._conclude(self.bundle_id, self.x_open, self.opened, self.segments, refused)

    async def discard(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._drop_bundle()
        finally:
            self._close()

    async def _drop_bundle(self) -> None:
        if self.opened is None:
            return
        t = self.t
        try:
            async with t._lock:
                if self._alive():
                    await asyncio.wait_for(t._discard(self.bundle_id), t.timeout)
        except (ConnectionError, OSError, TimeoutError):
            t._drop()  # a lost connection's open bundles are dropped by the switch

    def _close(self) -> None:
        t = self.t
        t._streams.discard(self)
        opened = self.opened
        if opened is not None:
            t._waiters.pop(self.x_open, None)
            if not opened.done():
                opened.cancel()
            elif not opened.cancelled():
                opened.exception()  # (retrieved: an error of a bundle given up is no news)
        for x in [x for x in t._errors if self.owns(x)]:
            del t._errors[x]


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
