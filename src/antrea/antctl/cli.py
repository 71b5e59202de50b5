"""antctl: inspect the controller (and, through ``agent_cmds``, the local agent).

Extension hook: if ``antrea.antctl.agent_cmds`` exists, its
``register(get_subparsers, top_subparsers)`` is called; it adds parsers with
``parents=[antrea.antctl.cli.common_parent()]`` (for ``-o`` and ``--kubeconfig``) and
``set_defaults(func=handler)`` where ``handler(args) -> int``. Handlers may raise
`AntctlError` for a clean one-line error (exit code 1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from functools import cache

from antrea.antctl.controller_client import AntctlError
from antrea.antctl.output import FORMATS
from antrea.apis import agentapi

DEFAULTS = {
    "output": "table",
    "kubeconfig": None,
    "server": None,
    "netns": None,
    "via_apiserver": None,
}


@cache
def common_parent() -> argparse.ArgumentParser:
    """Options every leaf command accepts (also accepted before the command)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=argparse.SUPPRESS,
        help="output format (default table)",
    )
    p.add_argument(
        "--kubeconfig",
        default=argparse.SUPPRESS,
        help="kubeconfig with an admin identity (default $KUBECONFIG, ~/.kube/config)",
    )
    p.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help="controller URL https://HOST:PORT (default: Endpoints kube-system/antrea)",
    )
    p.add_argument(
        "--netns",
        default=argparse.SUPPRESS,
        help="reach the controller from this network namespace (lab: antrea-LAB-node1)",
    )
    p.add_argument(
        "--via-apiserver",
        action="store_true",
        default=argparse.SUPPRESS,
        help="reach the controller through the Kubernetes API (services/proxy) instead of its "
        "address (default: only when the address cannot be connected to)",
    )
    return p


def _version(args: argparse.Namespace) -> int:
    """antctl's version, then (unless ``--client``) the agent's on a node, else the
    controller's, as upstream prints them."""
    from antrea.util.version import package_version

    print(f"antctlVersion: {package_version()}")
    if args.client:
        return 0
    from antrea.antctl.agent_cmds import agent_get, agent_mode

    try:
        if agent_mode() or getattr(args, "agent_api", None):
            info = agent_get(args, agentapi.AGENTINFO)
            print(f"agentVersion: {info.get('version', 'unknown')}")
        else:
            import asyncio

            from antrea.antctl.controller_client import ControllerClient

            client = ControllerClient(
                args.kubeconfig, args.server, netns=args.netns, via_apiserver=args.via_apiserver
            )
            info = asyncio.run(client.get("/apis/system.antrea.io/v1beta1/controllerinfo"))
            print(f"controllerVersion: {info.get('version', 'unknown')}")
    except AntctlError as exc:
        print(f"error: server version unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="antctl", description=__doc__.splitlines()[0], parents=[common_parent()]
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    v = top.add_parser(
        "version", help="show antctl's and the server's versions", parents=[common_parent()]
    )
    v.add_argument("--client", action="store_true", help="antctl's version only")
    v.add_argument("--agent-api", help="agent API URL (default $ANTREA_AGENT_API)")
    v.set_defaults(func=_version)
    get = top.add_parser("get", help="show computed objects and component state")
    get_sub = get.add_subparsers(dest="resource", metavar="RESOURCE", required=True)

    from antrea.antctl import controller_cmds

    controller_cmds.register(get_sub, top, common_parent())
    from antrea.antctl import stats_cmds

    stats_cmds.register(get_sub, common_parent())
    from antrea.antctl import ops_cmds

    ops_cmds.register(top, common_parent())
    from antrea.antctl import featuregates

    featuregates.register(get_sub, common_parent())
    try:
        agent_cmds = importlib.import_module("antrea.antctl.agent_cmds")
    except ModuleNotFoundError as exc:
        if exc.name != "antrea.antctl.agent_cmds":
            raise
    else:
        agent_cmds.register(get_sub, top)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # defaults applied here: the option actions are shared with every leaf parser (parents=),
    # so set_defaults on one parser would override values given before the command
    for key, value in DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    try:
        rc: int = args.func(args)
    except AntctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc
