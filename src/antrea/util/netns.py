"""Entering a network namespace from one thread: setns(2) through ctypes.

setns for CLONE_NEWNET is per-thread, so a worker thread can briefly enter a namespace (to
create a socket or make a connection there) while the event loop's thread never changes.
Python 3.11 has no ``os.setns``. Named namespaces are the ``ip netns`` ones under
``/var/run/netns``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> Path:
    """The bind mount of the named namespace ``name`` (``ip netns add NAME``)."""
    return NETNS_DIR / name


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(path: Path | str) -> Iterator[None]:
    """Run the body with the *calling thread* inside the network namespace at ``path``."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(str(path), os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


def call_in(path: Path | str, fn: Callable[[], T]) -> T:
    """Call ``fn`` in the namespace at ``path`` (synchronously, in the calling thread)."""
    with entered(path):
        return fn()
