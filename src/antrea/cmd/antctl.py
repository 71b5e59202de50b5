"""The `antctl` binary: see `antrea.antctl.cli`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from antrea.antctl.cli import main as antctl_main

    return antctl_main(argv)


if __name__ == "__main__":
    sys.exit(main())
