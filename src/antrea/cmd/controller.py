"""`antrea controller --config FILE`: one leader-elected controller candidate."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "controller",
        help="run a controller candidate (policy compiler + distribution, leader-elected)",
        description="Compete for the antrea-controller Lease; the leader serves agents.",
    )
    p.add_argument("--config", help="YAML config (agent/daemon format; nodeName = identity)")
    p.add_argument(
        "--config-overrides",
        default=None,
        help="YAML whose keys replace the --config file's (ignored if the file does not exist: "
        "the optional ConfigMap antrea-config-overrides in deploy/antrea.yml)",
    )
    p.set_defaults(func=main)


def run_until_signalled(coro: Coroutine[Any, Any, None]) -> int:
    """Run ``coro`` under uvloop; SIGTERM/SIGINT cancel it cleanly (exit code 0)."""
    import uvloop

    async def wrapper() -> int:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            return 0
        return 0

    rc: int = uvloop.run(wrapper())
    return rc


def main(args: argparse.Namespace) -> int:
    import sys

    from antrea.controller.config import ConfigError, config_from_dict
    from antrea.controller.controller import run_controller
    from antrea.util.config import read_with_overrides

    try:
        cfg = config_from_dict(read_with_overrides(args.config, args.config_overrides))
    except ConfigError as exc:
        print(f"antrea controller: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(run_controller(cfg))
