"""Replacing a file so that readers see the old or the new content, never a part of either.

Several components persist small files that another process (or the next start) reads back:
kubeconfigs, certificates and keys, the CNI conflist and launcher, lab state. They all write a
uniquely named temporary file in the same directory and rename it over the target; the
temporary file is created owner-only and gets its final mode just before the rename, so a
private file is never readable by others even for a moment. Standard library only (the CNI
installer uses it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path | str, data: bytes | str, *, mode: int = 0o644, fsync: bool = False
) -> None:
    """Atomically replace ``path`` with ``data`` (str is written as UTF-8), mode ``mode``.

    ``fsync=True`` also survives a crash of the machine (the data is on disk before the
    rename); without it the rename is atomic for concurrent readers only.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_private(path: Path | str, data: bytes | str) -> None:
    """`write_atomic` for secrets (keys, tokens): mode 0600."""
    write_atomic(path, data, mode=0o600)
