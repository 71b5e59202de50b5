"""The installed package's version (every role reports it: antctl version, agent and controller
info)."""

from __future__ import annotations

from functools import cache


@cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antrea")
    except PackageNotFoundError:
        return "unknown"
