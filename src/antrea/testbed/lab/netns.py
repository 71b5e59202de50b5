"""Network namespaces from Python: per-thread setns, sockets created inside a namespace.

A socket belongs to the network namespace that was current for the thread that created it, and
keeps it for life. So one process (the lab supervisor, or `antrea lab probe`) can serve or
probe hundreds of pod namespaces: a worker thread briefly enters the target namespace, creates
the socket and comes back; asyncio then drives the socket from the event loop thread. setns(2)
for CLONE_NEWNET is per-thread, so the event loop's own namespace never changes.

Entering a namespace is `antrea.util.netns` (``entered``, ``call_in``); this adds the worker
pool, sockets and commands the lab needs on top.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from antrea.util.netns import NETNS_DIR, call_in, netns_path

__all__ = [  # call_in and netns_path are antrea.util.netns's, re-exported for the lab's modules
    "add",
    "call_in",
    "delete",
    "exec_argv",
    "list_netns",
    "listen_socket",
    "netns_path",
    "run",
    "run_in",
    "socket_in",
]

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="netns")
        return _executor


async def run_in(path: Path | str, fn: Callable[[], T]) -> T:
    """Await ``fn`` run inside the namespace at ``path`` on a worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), call_in, path, fn)


async def socket_in(path: Path | str, family: int, kind: int) -> socket.socket:
    """A non-blocking socket that lives in the namespace at ``path``."""

    def make() -> socket.socket:
        s = socket.socket(family, kind)
        s.setblocking(False)
        return s

    return await run_in(path, make)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise with its stderr when it fails and ``check``."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, env=env, input=input, check=False
    )
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(
            proc.returncode, list(argv), output=proc.stdout, stderr=proc.stderr
        )
    return proc


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped to run inside ``netns`` (``ip netns exec`` also mounts its /sys)."""
    return ["ip", "netns", "exec", netns, *argv]


def list_netns(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def add(name: str) -> None:
    run(["ip", "netns", "add", name])


def delete(name: str) -> None:
    """Kill every process still inside the namespace, then remove it (idempotent)."""
    if not netns_path(name).exists():
        return
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    run(["ip", "netns", "del", name], check=False)
    if netns_path(name).exists():  # busy mount: lazily detach and remove the file
        run(["umount", "-l", str(netns_path(name))], check=False)
        try:
            netns_path(name).unlink()
        except FileNotFoundError:
            pass


def listen_socket(
    host: str, port: int, *, in_netns: str | None = None, backlog: int = 512
) -> socket.socket:
    """A listening, non-blocking TCP socket, created inside the namespace named ``in_netns``
    when given (a socket keeps the namespace it was created in)."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(backlog)
        s.setblocking(False)
        return s

    if in_netns is None:
        return make()
    return call_in(netns_path(in_netns), make)
