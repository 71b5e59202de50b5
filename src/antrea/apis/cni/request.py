"""Validation of one CNI invocation (environment + stdin) before anything talks to the agent.

The order of the checks follows libcni's ``skel`` so that a runtime sees the same error code from
us as from the reference plugins for the same bad input: environment (4), then the config's JSON
and network name (6/7), then container ID and interface name (4), then the version (1), then the
rest of the config (7, or 2 for a field we cannot honour). Only then does the plugin connect to
the agent, so a broken invocation never costs an agent round trip.
"""

from __future__ import annotations

from antrea.apis.cni import _json as json
from antrea.apis.cni import results, versions
from antrea.apis.cni.errors import (
    DECODING_FAILURE,
    INVALID_ENVIRONMENT_VARIABLES,
    INVALID_NETWORK_CONFIG,
    UNSUPPORTED_FIELD,
    CniError,
)
from antrea.apis.cni.protocol import DEFAULT_SOCKET, DEFAULT_TIMEOUT_SECONDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# Environment variables each command requires (SPEC.md "Parameters" per operation).
_REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "STATUS": (),
    "GC": ("CNI_PATH",),
}

# Container IDs and network names share this alphabet (libcni ValidateContainerID/NetworkName:
# ``^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$``), checked without ``re``, which costs milliseconds to import.
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")
_IFNAMSIZ = 16
# The IPAM types whose semantics the agent implements (it allocates from the Node's podCIDR).
SUPPORTED_IPAM_TYPES = ("host-local",)
VALID_ATTACHMENTS_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")
# A CNI config is a few KiB (the agent's protocols carry at most this much of it).
MAX_CONFIG_BYTES = 4 << 20
CONFIG_TOO_LARGE = f"error unmarshalling network config: larger than {MAX_CONFIG_BYTES >> 20} MiB"
# A CNI config is a few levels deep; deeper input is refused before anything recurses over it.
MAX_CONFIG_DEPTH = 100
# Longer than any runtime waits; also keeps the value a usable socket timeout.
MAX_TIMEOUT_SECONDS = 86400
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


class Request:
    """A validated invocation: what the plugin forwards to the agent."""

    __slots__ = (
        "args",
        "cni_version",
        "command",
        "config",
        "container_id",
        "ifname",
        "netns",
        "path",
        "socket",
        "timeout",
    )

    def __init__(
        self,
        *,
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        args: str,
        path: str,
        config: dict[str, Any],
        cni_version: str,
        socket: str,
        timeout: float,
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args
        self.path = path
        self.config = config
        self.cni_version = cni_version
        self.socket = socket
        self.timeout = timeout


def read_command(environ: Mapping[str, str]) -> str:
    """``CNI_COMMAND``: one of the spec's verbs, upper case as the spec spells them."""
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(
            INVALID_ENVIRONMENT_VARIABLES, "required env variables [CNI_COMMAND] missing"
        )
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT_VARIABLES, f"unknown CNI_COMMAND: {command}")
    return command


def valid_id(value: str) -> bool:
    """Whether ``value`` is a valid container ID / network name."""
    return bool(value) and value[0] in _ALNUM and all(c in _ID_CHARS for c in value)


def check_container_id(container_id: str) -> None:
    if not valid_id(container_id):
        raise CniError(
            INVALID_ENVIRONMENT_VARIABLES, "invalid characters in containerID", container_id
        )


def check_ifname(ifname: str) -> None:
    """Linux interface name rules, as the spec states them for ``CNI_IFNAME``."""
    if len(ifname) >= _IFNAMSIZ:
        raise CniError(
            INVALID_ENVIRONMENT_VARIABLES,
            "interface name is too long",
            f"interface name should be less than {_IFNAMSIZ} characters",
        )
    if ifname in (".", ".."):
        raise CniError(INVALID_ENVIRONMENT_VARIABLES, "interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in ifname):
        raise CniError(
            INVALID_ENVIRONMENT_VARIABLES,
            "interface name contains / or : or whitespace characters",
            ifname,
        )


def check_cni_args(args: str) -> None:
    """``CNI_ARGS`` is ``K1=V1;K2=V2``; unknown keys are the agent's business, syntax is ours."""
    for pair in args.split(";"):
        if not pair:
            continue
        key, sep, _ = pair.partition("=")
        if not sep or not key:
            raise CniError(
                INVALID_ENVIRONMENT_VARIABLES,
                "invalid CNI_ARGS: every pair must be KEY=VALUE",
                pair,
            )


def decode_config(stdin: bytes) -> dict[str, Any]:
    """Parse stdin as a JSON object; anything else is code 6 (failed to decode content)."""
    if len(stdin) > MAX_CONFIG_BYTES:
        raise CniError(DECODING_FAILURE, CONFIG_TOO_LARGE)
    try:
        config = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODING_FAILURE, f"error unmarshalling network config: {exc}") from None
    except (RecursionError, MemoryError):
        config = _TOO_DEEP  # deeper than the decoder goes: certainly deeper than our limit
    if config is _TOO_DEEP or _depth(config) > MAX_CONFIG_DEPTH:
        raise CniError(
            DECODING_FAILURE,
            f"error unmarshalling network config: nested more than {MAX_CONFIG_DEPTH} levels deep",
        )
    if not isinstance(config, dict):
        raise CniError(
            DECODING_FAILURE,
            "error unmarshalling network config: expected a JSON object, "
            f"got {type(config).__name__}",
        )
    return config


_TOO_DEEP = object()


def _depth(value: object) -> int:
    """How deeply objects and arrays nest in ``value`` (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level <= MAX_CONFIG_DEPTH:
            stack.extend((child, level + 1) for child in children)
    return deepest


def config_version(config: Mapping[str, Any]) -> str:
    """The config's ``cniVersion``; missing is code 7, not a string is code 6."""
    version = config.get("cniVersion")
    if version is None or version == "":
        raise CniError(INVALID_NETWORK_CONFIG, "missing cniVersion in network config")
    if not isinstance(version, str):
        raise CniError(
            DECODING_FAILURE, "decoding version from network config: cniVersion must be a string"
        )
    return version


def _check_network_name(config: Mapping[str, Any]) -> None:
    name = config.get("name")
    if name is None or name == "":
        raise CniError(INVALID_NETWORK_CONFIG, "missing network name")
    if not isinstance(name, str):
        raise CniError(
            DECODING_FAILURE, "error unmarshalling network config: name must be a string"
        )
    if not valid_id(name):
        raise CniError(INVALID_NETWORK_CONFIG, "invalid characters found in network name", name)


def _check_plugin_fields(config: Mapping[str, Any]) -> None:
    plugin_type = config.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise CniError(INVALID_NETWORK_CONFIG, "missing plugin type in network config")
    if "/" in plugin_type:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid plugin type", plugin_type)
    ipam = config.get("ipam")
    if ipam is not None:
        if not isinstance(ipam, dict):
            raise CniError(INVALID_NETWORK_CONFIG, "invalid ipam: must be a JSON object")
        ipam_type = ipam.get("type")
        if ipam_type not in SUPPORTED_IPAM_TYPES:
            raise CniError(
                UNSUPPORTED_FIELD,
                f"unsupported field ipam.type={json.dumps(ipam_type)}",
                "the antrea agent allocates from the Node's podCIDR with host-local semantics; "
                f"supported ipam types: {', '.join(SUPPORTED_IPAM_TYPES)}",
            )
    for key in ("dns", "runtimeConfig"):
        if key in config and not isinstance(config[key], dict):
            raise CniError(INVALID_NETWORK_CONFIG, f"invalid {key}: must be a JSON object")
    socket = config.get("cniSocket", DEFAULT_SOCKET)
    if not isinstance(socket, str) or not socket:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid cniSocket: must be a non-empty string")
    try:
        encoded = socket.encode("utf-8")
    except UnicodeEncodeError:
        raise CniError(
            INVALID_NETWORK_CONFIG, "invalid cniSocket: not a valid UTF-8 path", repr(socket)
        ) from None
    if b"\0" in encoded or len(encoded) > MAX_SOCKET_PATH_BYTES:
        raise CniError(
            INVALID_NETWORK_CONFIG,
            f"invalid cniSocket: a unix socket path has at most {MAX_SOCKET_PATH_BYTES} bytes "
            "and no NUL",
            repr(socket),
        )
    timeout = config.get("cniTimeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_SECONDS
    ):
        raise CniError(
            INVALID_NETWORK_CONFIG,
            f"invalid cniTimeoutSeconds: must be a number of seconds in (0, {MAX_TIMEOUT_SECONDS}]",
        )


def _check_valid_attachments(config: Mapping[str, Any]) -> None:
    present = [k for k in VALID_ATTACHMENTS_KEYS if k in config]
    if not present:
        raise CniError(
            INVALID_NETWORK_CONFIG, "GC requires cni.dev/valid-attachments in the network config"
        )
    for key in present:
        value = config[key]
        if not isinstance(value, list) or not all(
            isinstance(a, dict)
            and isinstance(a.get("containerID"), str)
            and isinstance(a.get("ifname"), str)
            for a in value
        ):
            raise CniError(
                INVALID_NETWORK_CONFIG,
                f"invalid {key}: must be a list of {{containerID, ifname}} objects",
            )


def _normalise_prev_result(command: str, config: dict[str, Any]) -> None:
    """Replace ``prevResult`` by its 1.1.0 shape; CHECK needs one, DEL tolerates a bad one."""
    if "prevResult" not in config or config["prevResult"] is None:
        config.pop("prevResult", None)
        if command == "CHECK":
            raise CniError(
                INVALID_NETWORK_CONFIG, "CHECK requires prevResult in the network config"
            )
        return
    try:
        config["prevResult"] = results.to_latest(config["prevResult"])
    except CniError:
        if command != "DEL":
            raise
        # DEL must clean up as much as it can; a result it cannot read is no reason to refuse.
        del config["prevResult"]


def parse_request(
    command: str, environ: Mapping[str, str], read_stdin: Callable[[], bytes]
) -> Request:
    """Validate everything about a non-VERSION invocation; raise CniError on the first problem.

    stdin is read only once the environment is known to be complete, as libcni's skel does, so
    that a plugin started by hand without the environment does not sit waiting for input.
    """
    missing = [name for name in _REQUIRED_ENV[command] if not environ.get(name)]
    if missing:
        raise CniError(
            INVALID_ENVIRONMENT_VARIABLES, f"required env variables [{','.join(missing)}] missing"
        )
    config = decode_config(read_stdin())
    _check_network_name(config)
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL", "CHECK"):
        check_container_id(container_id)
        check_ifname(ifname)
    version = config_version(config)
    versions.check_supported(version)
    versions.check_command_allowed(command, version)
    _check_plugin_fields(config)
    args = environ.get("CNI_ARGS", "")
    check_cni_args(args)
    if command in ("ADD", "DEL", "CHECK"):
        _normalise_prev_result(command, config)
    elif command == "GC":
        _check_valid_attachments(config)
    return Request(
        command=command,
        container_id=container_id,
        netns=environ.get("CNI_NETNS", ""),
        ifname=ifname,
        args=args,
        path=environ.get("CNI_PATH", ""),
        config=config,
        cni_version=version,
        socket=config.get("cniSocket", DEFAULT_SOCKET),
        timeout=float(config.get("cniTimeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
    )
