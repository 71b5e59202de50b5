"""`antrea daemon --config FILE`: the agent and a controller candidate in one process.

This is what the lab runs on every node. With ``--agent-stub``, or when the agent is missing,
the agent side is only a `StreamMirror` that logs what the controller sends (and dumps it to
``<stateDir>/controlplane-view.json``). When the agent exists but does not realize policies
yet (no ``antrea.agent.networkpolicy.start``), the mirror runs next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path
from typing import Any


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


async def _keep_running(what: str, factory: Any, delay: float = 5.0) -> None:
    """Restart a failed role instead of taking the agent (and pod networking) down with it."""
    import structlog

    log = structlog.get_logger(__name__)
    while True:
        try:
            await factory()
            return
        except Exception:
            log.exception("role_failed_restarting", role=what, delay=delay)
            await asyncio.sleep(delay)


def _has_policy_agent() -> bool:
    """Whether the agent realizes policies (and so consumes the controller stream itself)."""
    try:
        module = importlib.import_module("antrea.agent.networkpolicy")
    except ModuleNotFoundError:
        return False
    return hasattr(module, "start")


def _agent_kubeconfig(config_path: str | None) -> str | None:
    """The agent's identity (``kubeconfig``); the controller's is ``controllerKubeconfig``."""
    import yaml

    if not config_path:
        return None
    raw = yaml.safe_load(Path(config_path).read_text()) or {}
    value = raw.get("kubeconfig") if isinstance(raw, dict) else None
    return str(value) if value else None


async def run_daemon(config_path: str | None, *, stub: bool, controller: bool) -> None:
    import structlog

    from antrea.controller.config import load_controller_config
    from antrea.controller.controller import run_controller

    log = structlog.get_logger(__name__)
    ccfg = load_controller_config(config_path)
    agent_coro: Any = None
    if not stub:
        try:
            agent_mod = importlib.import_module("antrea.agent.agent")
            config_mod = importlib.import_module("antrea.agent.config")
        except ModuleNotFoundError as exc:
            log.warning("policy_agent_unavailable_using_stub", missing=exc.name)
        else:
            agent_coro = agent_mod.run_agent(config_mod.load_config(config_path))
    mirror = agent_coro is None or not _has_policy_agent()
    if mirror:
        log.info("controlplane_stream_mirror_enabled", reason="no policy agent")
    async with asyncio.TaskGroup() as tg:
        if agent_coro is not None:
            tg.create_task(agent_coro)
        if mirror:
            agent_kubeconfig = _agent_kubeconfig(config_path)
            tg.create_task(run_stub_agent(ccfg.node_name, agent_kubeconfig, ccfg.state_dir))
        if controller:
            tg.create_task(_keep_running("controller", lambda: run_controller(ccfg)))


def main(args: argparse.Namespace) -> int:
    from antrea.cmd.controller import run_until_signalled

    return run_until_signalled(
        run_daemon(args.config, stub=args.agent_stub, controller=not args.no_controller)
    )
