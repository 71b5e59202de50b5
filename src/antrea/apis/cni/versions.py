"""Which CNI spec versions the plugin speaks, and which commands each version allows.

CHECK appeared in 0.4.0 and STATUS/GC in 1.1.0; asking for them in an older version is an
"incompatible CNI version" error (code 1), as in libcni's skel. 0.1.0/0.2.0 are not offered:
their result type predates chaining, and no runtime that can run Antrea still uses them.
"""

from __future__ import annotations

from antrea.apis.cni.errors import INCOMPATIBLE_CNI_VERSION, CniError

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

# The first version in which each command exists (VERSION, ADD and DEL exist in all of ours).
_COMMAND_SINCE = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def parse(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; raises ValueError for anything that is not X.Y.Z."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def check_supported(version: str) -> None:
    """Raise code 1 unless ``version`` is one we can print results in."""
    if version not in SUPPORTED_VERSIONS:
        listed = " ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        raise CniError(
            INCOMPATIBLE_CNI_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports [{listed}]',
        )


def check_command_allowed(command: str, version: str) -> None:
    """Raise code 1 when ``command`` does not exist in spec ``version``."""
    since = _COMMAND_SINCE.get(command)
    if since is not None and not at_least(version, since):
        raise CniError(
            INCOMPATIBLE_CNI_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion {since} or later, config is {version}",
        )
