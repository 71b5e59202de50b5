"""kubectl-style output for antctl: aligned tables (padding 3, UPPERCASE headers), JSON, YAML.

Commands produce plain JSON-able data plus a list of `Column`s; `emit` renders it in the format
the user asked for. An empty list prints "No resources found." on stderr and succeeds, like
kubectl. Agent-side commands (``antrea.antctl.agent_cmds``) use the same helpers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

FORMATS = ("table", "json", "yaml")
NONE = "<none>"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[dict[str, Any]], Any]


def cell(v: Any) -> str:
    if v is None or v in ("", []):
        return NONE
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def summarize(items: Iterable[str], limit: int = 3) -> str:
    """``a,b,c + 2 more...`` like Antrea's GenerateTableElementWithSummary."""
    items = list(items)
    if not items:
        return NONE
    head = ",".join(items[:limit])
    return head if len(items) <= limit else f"{head} + {len(items) - limit} more..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], padding: int = 3) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = []
    for row in [list(headers), *rows]:
        parts = [c.ljust(widths[i] + padding) for i, c in enumerate(row[:-1])]
        lines.append(("".join(parts) + row[-1]).rstrip())
    return "\n".join(lines) + "\n"


def emit(
    data: dict[str, Any] | list[dict[str, Any]],
    fmt: str,
    columns: Sequence[Column],
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if fmt == "json":
        out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        return 0
    if fmt == "yaml":
        import yaml

        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        return 0
    items = data if isinstance(data, list) else [data]
    if not items:
        err.write("No resources found.\n")
        return 0
    rows = [[cell(c.value(item)) for c in columns] for item in items]
    out.write(table([c.header for c in columns], rows))
    return 0
