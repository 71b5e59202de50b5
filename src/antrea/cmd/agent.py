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
    p.add_argument(
        "--config-overrides",
        default=None,
        help="YAML whose keys replace the --config file's (ignored if the file does not exist: "
        "the optional ConfigMap antrea-config-overrides in deploy/antrea.yml)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import sys

    from antrea.agent.agent import run_agent
    from antrea.agent.config import ConfigError, from_mapping
    from antrea.cmd.controller import run_until_signalled
    from antrea.util.config import read_with_overrides

    try:
        cfg = from_mapping(read_with_overrides(args.config, args.config_overrides))
    except ConfigError as exc:
        print(f"antrea agent: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(run_agent(cfg))
