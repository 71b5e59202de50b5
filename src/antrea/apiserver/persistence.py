"""Optional durability for the in-memory store: a snapshot plus an append-only change log.

Every committed event is appended (as one JSON line) to an in-memory buffer that a background
task writes to ``changes.log`` every few milliseconds, so handlers never wait for the disk.
Start-up loads ``snapshot.json``, replays the log (a torn last line from a crash is ignored),
and immediately compacts both into a fresh snapshot. A clean shutdown flushes, compacts and
fsyncs, so nothing acknowledged before it is lost; a crash loses at most the last flush
interval. The resourceVersion counter continues from the highest persisted value.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
import structlog

from antrea.apiserver.store import DELETED, Event, Store

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
SNAPSHOT = "snapshot.json"
LOG = "changes.log"
COMPACT_AFTER = 200_000


class Persistence:
    def __init__(self, data_dir: Path, *, flush_interval: float = 0.02) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._buffer: list[bytes] = []
        self._log_lines = 0
        self._flush_interval = flush_interval
        self._task: asyncio.Task[None] | None = None
        self._log_file: Any = None
        self._pending = asyncio.Event()

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
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    # -- running -------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        group, resource = event.key
        # Reuse the event's serialization (watchers share it) instead of encoding again.
        head = orjson.dumps([event.rv, event.type, group, resource])
        self._buffer.append(head[:-1] + b"," + event.raw() + b"]")
        self._pending.set()

    def _flush(self) -> None:
        if not self._buffer or self._log_file is None:
            return
        data = b"\n".join(self._buffer) + b"\n"
        self._log_lines += len(self._buffer)
        self._buffer.clear()
        self._log_file.write(data)
        self._log_file.flush()
        if self._log_lines >= COMPACT_AFTER:
            self._write_snapshot(self._store)

    async def _flusher(self) -> None:
        while True:
            # Sleep until something was recorded, then a little longer to batch a burst.
            await self._pending.wait()
            await asyncio.sleep(self._flush_interval)
            self._pending.clear()
            try:
                self._flush()
            except OSError as exc:
                log.error("apiserver_persist_failed", error=str(exc))

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

    async def close(self) -> None:
        """Flush, compact and fsync: a clean shutdown loses nothing."""
        if self._task is not None:
            self._task.cancel()
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
