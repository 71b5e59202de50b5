"""Controller configuration: the keys it needs from the shared agent/daemon YAML (contracts).

One typed schema (`CONTROLLER_KEYS`: key, type, default). The daemon reads one file for both
roles, so it passes the agent's keys as ``also_known``; any other key is ignored with one
structured ``config_unknown_keys`` warning (`antrea.util.config`), a value of the wrong type is a
`ConfigError`. ``kubeAPIServerOverride``: the API server URL to use instead of
the in-cluster one (clusters without kube-proxy). Controller-only keys (all optional):
``controllerKubeconfig`` (the controller's own identity when it shares the file with an agent;
default ``kubeconfig``), ``controllerBindAddress`` (default 0.0.0.0), ``controllerAddress`` (the
address published in Endpoints; default: the Node's InternalIP),
``leaseDurationSeconds``/``renewDeadlineSeconds``/``retryPeriodSeconds``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antrea.apis.controlplane.names import API_PORT, NAMESPACE
from antrea.util.config import (
    ConfigError,
    as_float,
    as_int,
    as_str,
    read_mapping,
    warn_unknown_keys,
)

__all__ = ["CONTROLLER_KEYS", "ConfigError", "ControllerConfig", "config_from_dict"]


@dataclass(frozen=True)
class ControllerConfig:
    node_name: str
    kubeconfig: str | None = None
    kube_api_server_override: str | None = None
    controller_api_port: int = API_PORT
    lease_namespace: str = NAMESPACE
    state_dir: str = "/var/run/antrea"
    bind_address: str = "0.0.0.0"
    advertise_address: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _port(name: str, value: Any) -> int:
    port = as_int(name, value)
    if not 0 <= port < 65536:  # 0: any free port (tests)
        raise ConfigError(f"{name}: must be a TCP port (0: any free one)")
    return port


def _seconds(name: str, value: Any) -> float:
    seconds = as_float(name, value)
    if seconds <= 0:
        raise ConfigError(f"{name}: must be > 0")
    return seconds


# The file's keys (Antrea's names where upstream has them): how each is read.
CONTROLLER_KEYS: dict[str, Callable[[str, Any], Any]] = {
    "nodeName": as_str,
    "kubeconfig": as_str,
    "controllerKubeconfig": as_str,
    "kubeAPIServerOverride": as_str,
    "controllerAPIPort": _port,
    "leaseNamespace": as_str,
    "stateDir": as_str,
    "controllerBindAddress": as_str,
    "controllerAddress": as_str,
    "leaseDurationSeconds": _seconds,
    "renewDeadlineSeconds": _seconds,
    "retryPeriodSeconds": _seconds,
}


def config_from_dict(raw: dict[str, Any], *, also_known: Iterable[str] = ()) -> ControllerConfig:
    warn_unknown_keys(raw, set(CONTROLLER_KEYS) | set(also_known), role="controller")
    v = {k: parse(k, raw[k]) for k, parse in CONTROLLER_KEYS.items() if raw.get(k) is not None}
    node = v.get("nodeName") or os.environ.get("NODE_NAME") or socket.gethostname()
    return ControllerConfig(
        node_name=node,
        # `antrea daemon` shares the agent's file: the controller has its own identity.
        kubeconfig=v.get("controllerKubeconfig") or v.get("kubeconfig") or None,
        kube_api_server_override=v.get("kubeAPIServerOverride") or None,
        controller_api_port=v.get("controllerAPIPort", API_PORT),
        lease_namespace=v.get("leaseNamespace", NAMESPACE),
        state_dir=v.get("stateDir", "/var/run/antrea"),
        bind_address=v.get("controllerBindAddress", "0.0.0.0"),
        advertise_address=v.get("controllerAddress") or None,
        lease_duration=v.get("leaseDurationSeconds", 15.0),
        renew_deadline=v.get("renewDeadlineSeconds", 10.0),
        retry_period=v.get("retryPeriodSeconds", 2.0),
    )


def load_controller_config(
    path: str | Path | None, *, also_known: Iterable[str] = ()
) -> ControllerConfig:
    return config_from_dict(read_mapping(path), also_known=also_known)
