"""Structured logging for every role: JSON when not on a TTY, console otherwise.

One format for everything the process logs: structlog events and stdlib records (aiohttp,
asyncio, kubernetes_asyncio, ...) go through the same renderer, so a JSON log has one object
per line whoever wrote it. The level can change while the process runs (`set_level`, behind
``antctl log-level``): structlog events below it are dropped by the first processor, and
libraries log at the level or ``WARNING``, whichever is higher (their INFO is access-log
noise), except at ``debug``, where they log everything too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")
_state = {"level": logging.INFO}
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _numeric(level: str) -> int:
    value = logging.getLevelName(level.upper())
    if level.lower() not in LEVELS or not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    return value


def _drop_below_level(
    _logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _METHOD_LEVELS.get(method, logging.INFO) < _state["level"]:
        raise structlog.DropEvent
    return event


def _library_level(numeric: int) -> int:
    return numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)


def set_level(level: str) -> None:
    """Change the process's log level now (raises ValueError for an unknown level)."""
    numeric = _numeric(level)
    _state["level"] = numeric
    logging.getLogger().setLevel(_library_level(numeric))


def get_level() -> str:
    return str(logging.getLevelName(_state["level"])).lower()


def configure(*, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (and stdlib logging, which libraries use) once per process."""
    try:
        numeric = _numeric(level)
    except ValueError:
        numeric = logging.INFO
    _state["level"] = numeric
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            _drop_below_level,
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        # Everything reaches `_drop_below_level`, which reads the level at run time.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_library_level(numeric))
