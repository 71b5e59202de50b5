"""The `antrea` binary: one process, several roles.

Each role lives in `antrea.cmd.<role>` and exposes ``register(subparsers)``, which adds its
sub-parser and sets ``func`` to an ``(args) -> int`` handler. Role modules import their heavy
dependencies inside the handler so that `antrea --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

ROLES = ("apiserver", "lab", "agent", "controller", "daemon", "installcni", "manifest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antrea", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument(
        "--log-format", choices=("auto", "json", "console"), default="auto", help="log rendering"
    )
    sub = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    for role in ROLES:
        try:
            module = importlib.import_module(f"antrea.cmd.{role}")
        except ModuleNotFoundError as exc:  # a role not built yet must not break the others
            if exc.name != f"antrea.cmd.{role}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from antrea.util.logging import configure

    configure(level=args.log_level, fmt=args.log_format)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
