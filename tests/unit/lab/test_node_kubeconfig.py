"""The lab's node kubeconfig for an external API server: the context is resolved by the product's
kubeconfig reader (`antrea.k8s.client.kubeconfig_sections`), the server points at the forwarder,
and file references are inlined."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from antrea.k8s.errors import KubeconfigError
from antrea.testbed.lab.apihost import node_kubeconfig_for_external


def _write(tmp_path: Path, current: str | None) -> Path:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "other", "cluster": {"server": "https://10.9.9.9:6443"}},
            {
                "name": "real",
                "cluster": {
                    "server": "https://k8s.example:7443",
                    "certificate-authority": "ca.crt",
                },
            },
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "a", "context": {"cluster": "other", "user": "u"}},
            {"name": "b", "context": {"cluster": "real", "user": "u"}},
        ],
    }
    if current:
        doc["current-context"] = current
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_current_context_cluster_is_rewritten_to_the_forwarder(tmp_path: Path) -> None:
    text, (host, port) = node_kubeconfig_for_external(_write(tmp_path, "b"), "192.0.2.1:6443")
    assert (host, port) == ("k8s.example", 7443)
    clusters = {c["name"]: c["cluster"] for c in yaml.safe_load(text)["clusters"]}
    assert clusters["real"]["server"] == "https://192.0.2.1:6443"
    assert clusters["real"]["tls-server-name"] == "k8s.example"
    assert base64.b64decode(clusters["real"]["certificate-authority-data"]) == b"CA"
    assert clusters["other"]["server"] == "https://10.9.9.9:6443"


def test_ambiguous_context_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="no current-context"):
        node_kubeconfig_for_external(_write(tmp_path, None), "192.0.2.1:6443")
