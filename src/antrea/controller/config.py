"""Controller configuration: the keys it needs from the shared agent/daemon YAML (contracts).

The daemon reads one file for both roles, so the controller accepts the agent's format and
ignores what it does not use. ``kubeAPIServerOverride``: the API server URL to use instead of
the in-cluster one (clusters without kube-proxy). Controller-only keys (all optional):
``controllerKubeconfig`` (the controller's own identity when it shares the file with an agent;
default ``kubeconfig``), ``controllerBindAddress`` (default 0.0.0.0), ``controllerAddress`` (the
address published in Endpoints; default: the Node's InternalIP),
``leaseDurationSeconds``/``renewDeadlineSeconds``/``retryPeriodSeconds``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ControllerConfig:
    node_name: str
    kubeconfig: str | None = None
    kube_api_server_override: str | None = None
    controller_api_port: int = 10349
    lease_namespace: str = "kube-system"
    state_dir: str = "/var/run/antrea"
    bind_address: str = "0.0.0.0"
    advertise_address: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def config_from_dict(raw: dict[str, Any]) -> ControllerConfig:
    node = raw.get("nodeName") or os.environ.get("NODE_NAME") or socket.gethostname()
    return ControllerConfig(
        node_name=str(node),
        # `antrea daemon` shares the agent's file: the controller has its own identity.
        kubeconfig=raw.get("controllerKubeconfig") or raw.get("kubeconfig") or None,
        kube_api_server_override=raw.get("kubeAPIServerOverride") or None,
        controller_api_port=int(raw.get("controllerAPIPort", 10349)),
        lease_namespace=str(raw.get("leaseNamespace", "kube-system")),
        state_dir=str(raw.get("stateDir", "/var/run/antrea")),
        bind_address=str(raw.get("controllerBindAddress", "0.0.0.0")),
        advertise_address=raw.get("controllerAddress") or None,
        lease_duration=float(raw.get("leaseDurationSeconds", 15.0)),
        renew_deadline=float(raw.get("renewDeadlineSeconds", 10.0)),
        retry_period=float(raw.get("retryPeriodSeconds", 2.0)),
    )


def load_controller_config(path: str | Path | None) -> ControllerConfig:
    raw: dict[str, Any] = {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a YAML mapping")
        raw = loaded
    return config_from_dict(raw)
