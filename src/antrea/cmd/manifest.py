"""`antrea manifest`: deploy/antrea.yml with its options set and the config checksum recomputed.

    antrea manifest --datapath netdev --kube-api-server https://172.30.0.1:6443 > antrea.yml

The options are keys of the ConfigMap ``antrea-config`` (``ovsDatapathType``, with
``disableTXChecksumOffload: true`` for netdev as the userspace datapath needs, and
``kubeAPIServerOverride`` in both roles' files). The text is edited line by line, so comments and
layout stay; the pods' ``checksum/config`` annotations are set to the new ConfigMap's hash, so
that re-applying a changed configuration rolls the agents and controllers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from antrea.apis import agentapi

DEFAULT_MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "antrea.yml"
_CHECKSUM = re.compile(r"^(\s*checksum/config:\s*)\S+\s*$")


def config_checksum(data: dict[str, Any]) -> str:
    """sha256 of a ConfigMap's data (keys sorted, compact JSON): the ``checksum/config`` value."""
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _configmap_data(text: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == agentapi.CONFIGMAP:
            data: dict[str, Any] = doc["data"]
            return data
    raise ValueError(f"no ConfigMap {agentapi.CONFIGMAP} in the manifest")


def _set_key(text: str, key: str, value: str) -> str:
    """Set ``key: value`` on every line of the config files that has that key."""
    pattern = re.compile(rf"^(\s+){re.escape(key)}:.*$", re.M)
    if not pattern.search(text):
        raise ValueError(f"the manifest's config has no {key}")
    return pattern.sub(lambda m: f"{m.group(1)}{key}: {value}", text)


def render(text: str, *, datapath: str | None = None, kube_api_server: str | None = None) -> str:
    if datapath is not None:
        text = _set_key(text, "ovsDatapathType", datapath)
        text = _set_key(text, "disableTXChecksumOffload", json.dumps(datapath == "netdev"))
    if kube_api_server is not None:
        text = _set_key(text, "kubeAPIServerOverride", json.dumps(kube_api_server))
    checksum = config_checksum(_configmap_data(text))
    lines = [_CHECKSUM.sub(lambda m: m.group(1) + checksum, line) for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "manifest",
        help="print deploy/antrea.yml with options set (datapath, API server override)",
        description="Print the deployment manifest with its options set and checksums updated.",
    )
    p.add_argument("-f", "--file", default=str(DEFAULT_MANIFEST), help="the manifest to edit")
    p.add_argument("--datapath", choices=("system", "netdev"), help="ovsDatapathType")
    p.add_argument("--kube-api-server", help="kubeAPIServerOverride (https://HOST:PORT)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import sys

    try:
        out = render(
            Path(args.file).read_text(),
            datapath=args.datapath,
            kube_api_server=args.kube_api_server,
        )
    except (OSError, ValueError) as exc:
        print(f"antrea manifest: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0
