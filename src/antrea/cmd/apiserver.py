"""`antrea apiserver`: the embedded Kubernetes-compatible API server as a process."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "apiserver",
        help="run the embedded Kubernetes-compatible API server",
        description="Serve the Kubernetes API subset the lab and the product need (HTTPS, "
        "bearer tokens), keeping state in --data-dir.",
    )
    parser.add_argument("--port", type=int, default=6443, help="HTTPS port (0 = pick a free one)")
    parser.add_argument("--bind-address", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--data-dir", type=Path, help="directory for state, certificates and tokens"
    )
    parser.add_argument(
        "--kubeconfig-out", type=Path, help="write an admin kubeconfig for this server here"
    )
    parser.add_argument(
        "--token-auth-file", type=Path, help='static tokens CSV: token,user,uid,"group1,group2"'
    )
    parser.add_argument(
        "--cert-dir", type=Path, help="CA and serving certificate (default DATA_DIR/pki)"
    )
    parser.add_argument(
        "--extra-san",
        nargs="*",
        default=[],
        metavar="IP_OR_NAME",
        help="extra subject alternative names for the serving certificate",
    )
    parser.add_argument(
        "--watch-history",
        type=int,
        default=10000,
        help="recent events a watch can resume from before it gets 410 Gone",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    import structlog
    import uvloop

    from antrea.testbed.apiserver.server import APIServer

    log = structlog.get_logger("antrea.cmd.apiserver")

    async def main() -> None:
        server = APIServer(
            port=args.port,
            bind_address=args.bind_address,
            data_dir=args.data_dir,
            token_auth_file=args.token_auth_file,
            cert_dir=args.cert_dir,
            extra_sans=args.extra_san,
            history=args.watch_history,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        try:
            if args.kubeconfig_out is not None:
                server.write_kubeconfig(args.kubeconfig_out)
                log.info("apiserver_kubeconfig_written", path=str(args.kubeconfig_out))
            await stop.wait()
        finally:
            await server.stop()

    uvloop.run(main())
    return 0
