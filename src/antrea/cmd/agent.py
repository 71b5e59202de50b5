"""`antrea agent --config FILE`: the node agent (pod networking, CNI server, policy)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "agent",
        help="run the node agent",
        description="Node agent: OVS bridge and pipeline, CNI server, node routes, local API.",
    )
    p.add_argument("--config", required=True, help="agent YAML config file")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import sys

    from antrea.agent.agent import run_agent
    from antrea.agent.config import ConfigError, load_config
    from antrea.cmd.controller import run_until_signalled

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"antrea agent: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(run_agent(cfg))
