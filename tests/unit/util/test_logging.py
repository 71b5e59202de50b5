"""Runtime log levels, and library (stdlib) records in the same JSON format."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from antrea.util import logging as alog


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    alog.configure(level="info", fmt="json")
    yield buf
    structlog.reset_defaults()
    for h in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(h)


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line]


def test_level_changes_at_run_time(stderr: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.debug("hidden")
    log.info("shown")
    alog.set_level("debug")
    assert alog.get_level() == "debug"
    log.debug("now_shown")
    alog.set_level("error")
    log.warning("hidden_again")
    log.exception("errors_pass")
    assert [e["event"] for e in _lines(stderr)] == ["shown", "now_shown", "errors_pass"]
    with pytest.raises(ValueError, match="unknown log level"):
        alog.set_level("chatty")
    assert alog.get_level() == "error"


def test_library_records_are_json_too(stderr: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").warning("bad request from %s", "10.0.0.1")
    logging.getLogger("aiohttp.access").info("GET / 200")  # below WARNING: library noise
    alog.set_level("debug")
    logging.getLogger("aiohttp.access").info("GET /x 200")
    lines = _lines(stderr)
    assert [(e["event"], e["level"], e["logger"]) for e in lines] == [
        ("bad request from 10.0.0.1", "warning", "aiohttp.server"),
        ("GET /x 200", "info", "aiohttp.access"),
    ]
    assert all("timestamp" in e for e in lines)
