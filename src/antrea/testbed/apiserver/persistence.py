"""Optional durability for the in-memory store: a snapshot plus an append-only change log.

Every committed event is appended (as one JSON line) to an in-memory buffer. A background task
writes the buffer to ``changes.log`` and ``fdatasync``s it in a worker thread; writes that
arrive meanwhile form the next batch (group commit), so the disk is synced once per batch, not
once per write. A request that wrote waits (`wait_durable`) until its resourceVersion is on
disk before it is answered: nothing is acknowledged that a crash (even SIGKILL or a power cut)
could lose. Start-up loads ``snapshot.json``, replays the log (a torn last line from a crash
is ignored), and immediately compacts both into a fresh snapshot. A clean shutdown flushes,
compacts and fsyncs. The resourceVersion counter continues from the highest persisted value.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
import structlog

from antrea.errors import AntreaError
from antrea.testbed.apiserver.store import DELETED, Event, Store

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
SNAPSHOT = "snapshot.json"
LOG = "changes.log"
COMPACT_AFTER = 200_000


class PersistError(AntreaError, OSError):
    """The change log could not be written: the write was not made durable."""


class Persistence:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._buffer: list[bytes] = []
        self._buffer_rv = 0  # highest resourceVersion in the buffer
        self._log_lines = 0
        self._task: asyncio.Task[None] | None = None
        self._log_file: Any = None
        self._pending = asyncio.Event()
        self._closing = False
        self.durable_rv = 0  # everything up to here is on disk
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- start-up ------------------------------------------------------------------------

    def load(self) -> tuple[int, list[tuple[str, str, JSON]]]:
        """Return (resourceVersion, [(group, resource, object)]) as last persisted."""
        objects: dict[tuple[str, str, str, str], tuple[str, str, JSON]] = {}
        rv = 0
        snap = self.dir / SNAPSHOT
        if snap.exists():
            doc = orjson.loads(snap.read_bytes())
            rv = int(doc.get("rv", 0))
            for group, resource, obj in doc.get("objects", []):
                objects[_ident(group, resource, obj)] = (group, resource, obj)
        path = self.dir / LOG
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    ev_rv, kind, group, resource, obj = orjson.loads(line)
                except (orjson.JSONDecodeError, ValueError):
                    log.warning("apiserver_log_line_skipped", path=str(path))
                    continue
                rv = max(rv, int(ev_rv))
                ident = _ident(group, resource, obj)
                if kind == DELETED:
                    objects.pop(ident, None)
                else:
                    objects[ident] = (group, resource, obj)
        return rv, list(objects.values())

    def start(self, store: Store) -> None:
        """Compact what was loaded, open the log and begin recording ``store``'s events."""
        self._write_snapshot(store)
        self._log_file = open(self.dir / LOG, "ab")  # noqa: SIM115 - lives as long as the server
        store.on_commit.append(self.record)
        self._store = store
        self.durable_rv = store.rv
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    # -- running -------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        group, resource = event.key
        # Reuse the event's serialization (watchers share it) instead of encoding again.
        head = orjson.dumps([event.rv, event.type, group, resource])
        self._buffer.append(head[:-1] + b"," + event.raw() + b"]")
        self._buffer_rv = max(self._buffer_rv, event.rv)
        self._pending.set()

    async def wait_durable(self, rv: int) -> None:
        """Return once every event up to ``rv`` is on disk; raise `PersistError` if the
        write failed."""
        if rv <= self.durable_rv:
            return
        if self._task is None:
            raise PersistError("the change log is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((rv, future))
        await asyncio.shield(future)

    def _take(self) -> tuple[bytes, int]:
        data = b"\n".join(self._buffer) + b"\n"
        self._log_lines += len(self._buffer)
        self._buffer.clear()
        return data, self._buffer_rv

    def _write(self, data: bytes) -> None:
        """Append and sync (in a worker thread: the event loop keeps serving)."""
        self._log_file.write(data)
        self._log_file.flush()
        os.fdatasync(self._log_file.fileno())

    def _settle(self, rv: int, error: BaseException | None) -> None:
        if error is None:
            self.durable_rv = max(self.durable_rv, rv)
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for want, future in self._waiters:
            if future.done():
                continue
            if error is not None:
                future.set_exception(PersistError(str(error)))
            elif want <= self.durable_rv:
                future.set_result(None)
            else:
                keep.append((want, future))
        self._waiters = keep

    def _flush(self) -> None:
        """Write and sync the buffer now, synchronously (start-up, shutdown, tests)."""
        if not self._buffer or self._log_file is None:
            return
        data, rv = self._take()
        self._write(data)
        self._settle(rv, None)

    async def _flusher(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            if self._buffer and self._log_file is not None:
                data, rv = self._take()
                try:
                    await asyncio.to_thread(self._write, data)
                    if self._log_lines >= COMPACT_AFTER:
                        self._write_snapshot(self._store)
                except Exception as exc:
                    # The batch is not durable: its writers are answered 500, never left
                    # waiting, and the flusher goes on with the next batch.
                    log.error("apiserver_persist_failed", error=str(exc))
                    self._settle(rv, exc)
                else:
                    self._settle(rv, None)
            if self._closing and not self._buffer:
                return

    def _write_snapshot(self, store: Store) -> None:
        objects: list[list[Any]] = []
        for group, resource in store.resource_keys():
            for obj in store.list((group, resource)):
                objects.append([group, resource, obj])
        data = orjson.dumps({"rv": store.rv, "objects": objects})
        tmp = self.dir / (SNAPSHOT + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.dir / SNAPSHOT)
        # The snapshot now holds everything: start a new, empty log.
        if self._log_file is not None:
            self._log_file.close()
        with open(self.dir / LOG, "wb") as f:
            os.fsync(f.fileno())
        if self._log_file is not None:
            self._log_file = open(self.dir / LOG, "ab")  # noqa: SIM115
        self._log_lines = 0
        with contextlib.suppress(OSError):
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._settle(store.rv, None)

    async def close(self) -> None:
        """Flush, compact and fsync: a clean shutdown loses nothing."""
        if self._task is not None:
            # Let an in-flight batch finish (it holds the log file), then stop.
            self._closing = True
            self._pending.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._log_file is None:
            return
        self._flush()
        self._write_snapshot(self._store)
        self._log_file.close()
        self._log_file = None
        with contextlib.suppress(ValueError):
            self._store.on_commit.remove(self.record)


def _ident(group: str, resource: str, obj: JSON) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (group, resource, meta.get("namespace") or "", meta["name"])
