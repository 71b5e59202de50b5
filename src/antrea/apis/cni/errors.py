"""CNI error codes and the one exception type the plugin turns into the spec's error JSON.

The codes are the spec's well-known table (0-99 reserved) plus Antrea's plugin codes from
``pkg/apis/cni/v1beta1/cni.proto``, so that an error raised by the agent reaches the runtime with
the same number Antrea would have used.
"""

from __future__ import annotations

from antrea.errors import AntreaError

# Spec codes (SPEC.md "Error" section).
INCOMPATIBLE_CNI_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT_VARIABLES = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY = 51

# Antrea plugin codes (>= 100).
IPAM_FAILURE = 101
CONFIG_INTERFACE_FAILURE = 102
CHECK_INTERFACE_FAILURE = 103
UNKNOWN_RPC_ERROR = 201
INCOMPATIBLE_API_VERSION = 202

# libcni's catch-all; used only for bugs in the plugin itself.
INTERNAL = 999


class CniError(AntreaError):
    """A failure to report to the runtime as ``{"code", "msg", "details"}`` on stdout."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, object]:
        """The spec's error object; ``details`` is left out when empty, as libcni does."""
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out
