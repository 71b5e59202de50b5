"""`antrea daemon --config FILE`: the agent and a controller candidate in one process.

This is what the lab runs on every node. One file configures both roles (each role's schema
ignores the other's keys; a key neither knows gets one ``config_unknown_keys`` warning). With
``--agent-stub`` the agent side is only a `StreamMirror` that logs what the controller sends (and
dumps it to ``<stateDir>/controlplane-view.json``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from antrea.util.supervisor import Backoff, keep_running

CONTROLLER_RESTART = Backoff(initial=5.0, maximum=5.0)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "daemon",
        help="run the agent and a controller candidate in one process",
        description="Agent + leader-elected controller candidate (the lab's per-node process).",
    )
    p.add_argument("--config", help="YAML config (agent format)")
    p.add_argument(
        "--agent-stub",
        action="store_true",
        help="do not realize policies: only log/dump the controller stream",
    )
    p.add_argument(
        "--no-controller",
        action="store_true",
        help="do not compete for controller leadership on this node",
    )
    p.set_defaults(func=main)


async def run_stub_agent(node: str, kubeconfig: str | None, state_dir: str) -> None:
    import structlog

    from antrea.agent.controlplane_client import ControlPlaneClient, StreamMirror
    from antrea.k8s.resources import load_api_client

    structlog.get_logger(__name__).info("stub_agent_started", node=node)
    api_client = await load_api_client(kubeconfig)
    client = ControlPlaneClient(node, api_client)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    try:
        await StreamMirror(client, str(Path(state_dir) / "controlplane-view.json")).run()
    finally:
        await client.close()
        await api_client.close()


async def run_daemon(config_path: str | None, *, stub: bool, controller: bool) -> None:
    import structlog

    from antrea.agent.agent import run_agent
    from antrea.agent.config import AGENT_KEYS, from_mapping
    from antrea.controller.config import CONTROLLER_KEYS, config_from_dict
    from antrea.controller.controller import run_controller
    from antrea.util.config import read_mapping, warn_unknown_keys

    log = structlog.get_logger(__name__)
    raw = read_mapping(config_path)
    warn_unknown_keys(raw, AGENT_KEYS | set(CONTROLLER_KEYS), role="daemon")
    ccfg = config_from_dict(raw, also_known=raw)
    async with asyncio.TaskGroup() as tg:
        if stub:
            log.info("controlplane_stream_mirror_enabled", reason="agent stub")
            kubeconfig = str(raw.get("kubeconfig") or "") or None
            tg.create_task(run_stub_agent(ccfg.node_name, kubeconfig, ccfg.state_dir))
        else:
            tg.create_task(run_agent(from_mapping(raw, also_known=raw)))
        if controller:
            # A failing candidacy is restarted; it never takes the agent (pod networking) down.
            tg.create_task(
                keep_running("controller", lambda: run_controller(ccfg), CONTROLLER_RESTART)
            )


def main(args: argparse.Namespace) -> int:
    from antrea.cmd.controller import run_until_signalled

    return run_until_signalled(
        run_daemon(args.config, stub=args.agent_stub, controller=not args.no_controller)
    )
