"""Kubeconfig files for clients of the embedded API server (admin, per-node identities)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from antrea.util.atomicfile import write_private


def render_kubeconfig(
    *,
    server: str,
    ca_pem: bytes,
    token: str,
    user: str = "admin",
    cluster: str = "antrea",
) -> str:
    """A kubeconfig with one cluster, one token user and one current context."""
    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    text: str = yaml.safe_dump(doc, sort_keys=False)
    return text


def write_kubeconfig(path: Path, text: str) -> None:
    """Write atomically with mode 0600 (it holds a bearer token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)
