"""`antrea install-cni`: what the DaemonSet's install-cni init container runs.

Puts the CNI executable in the host's CNI bin dir and the conflist in its conf dir (both
atomically, through `antrea.agent.cniserver.install`, exactly as the agent re-does at every
start), so the node's runtime finds a network plugin as soon as the agent answers on its
socket. The conflist carries no MTU yet (the agent rewrites it with the MTU it computed when
it starts).
"""

from __future__ import annotations

import argparse


def register(subparsers: object) -> None:
    p = subparsers.add_parser(  # type: ignore[attr-defined]
        "install-cni",
        help="install the CNI executable and conflist on the host (init container)",
        description="Install the CNI plugin executable and 10-antrea.conflist on the host.",
    )
    p.add_argument("--bin-dir", default="/host/opt/cni/bin", help="host CNI bin dir (mounted)")
    p.add_argument("--conf-dir", default="/host/etc/cni/net.d", help="host CNI conf dir")
    p.add_argument("--cni-socket", default="/var/run/antrea/cni.sock", help="agent CNI socket")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from antrea.agent.cniserver.install import install_plugin, write_conflist

    try:
        exe = install_plugin(Path(args.bin_dir), socket=args.cni_socket)
        conf = write_conflist(
            Path(args.conf_dir), mtu=0, socket=args.cni_socket, bin_dir=Path(args.bin_dir)
        )
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"antrea install-cni: {exc}", file=sys.stderr)
        return 1
    print(f"installed {exe} and {conf}")
    return 0
