"""Every asyncio task of the process with its stack: the Python counterpart of a goroutine dump
(``antctl supportbundle``)."""

from __future__ import annotations

import asyncio
import io


def dump_tasks() -> str:
    """Call from the event loop's thread."""
    out = io.StringIO()
    current = asyncio.all_tasks()
    out.write(f"{len(current)} tasks\n")
    for task in sorted(current, key=lambda t: t.get_name()):
        out.write(f"\n--- {task.get_name()} {task!r}\n")
        task.print_stack(file=out)
    return out.getvalue()
