"""Errors raised by the OVS layer."""

from __future__ import annotations

from collections.abc import Sequence

from antrea.errors import AntreaError


class OvsError(AntreaError):
    """Root of OVS errors."""


class OvsCommandError(OvsError):
    """An `ovs-*` command failed; carries what ran and what it said."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.argv[:4])}... exited {returncode}: {self.stderr}")


class OfctlError(OvsCommandError):
    """`ovs-ofctl` failed."""


class BundleRejected(OfctlError):
    """The switch rejected a bundle: nothing of it was applied (bundles are atomic)."""


class VsctlError(OvsCommandError):
    """`ovs-vsctl` failed: nothing of the transaction was applied."""
