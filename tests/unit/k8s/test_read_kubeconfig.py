"""One kubeconfig reader serves both client stacks: kubernetes-asyncio and the lab's aiohttp."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yaml

from antrea.k8s.client import KubeconfigError, read_kubeconfig
from antrea.testbed.lab.kube import Kubeconfig
from antrea.util import pki


def _client_pair() -> tuple[bytes, bytes, bytes]:
    ca, ca_key = pki.new_ca("test-ca")
    cert, key = pki.issue_serving(
        ca, ca_key, pki.general_names(["client"]), common_name="client", days=1
    )
    return pki.cert_pem(ca), pki.cert_pem(cert), pki.key_pem(key)


def _write(tmp_path: Path, cluster: dict[str, object], user: dict[str, object]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_inline_and_file_material_token_file_and_server_name(tmp_path: Path) -> None:
    ca, cert, key = _client_pair()
    (tmp_path / "ca.crt").write_bytes(ca)
    (tmp_path / "token").write_text("s3cret\n")
    path = _write(
        tmp_path,
        {
            "server": "https://10.0.0.1:6443/",
            "certificate-authority": "ca.crt",
            "tls-server-name": "api.lab",
        },
        {
            "tokenFile": "token",
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        },
    )
    kc = read_kubeconfig(path)
    assert kc.server == "https://10.0.0.1:6443"
    assert kc.token == "s3cret"
    assert kc.tls_server_name == "api.lab"
    assert kc.ca is not None and kc.ca.path == str(tmp_path.resolve() / "ca.crt")
    assert kc.ca.read() == ca
    assert kc.client_cert is not None and kc.client_cert.read() == cert
    assert kc.client_key is not None and kc.client_key.read() == key

    lab = Kubeconfig.load(path)  # loads the client chain: a mismatched pair would raise
    assert lab.server == "https://10.0.0.1:6443"
    assert lab.token == "s3cret"
    assert lab.server_name == "api.lab"
    assert isinstance(lab.ssl, ssl.SSLContext) and lab.ssl.verify_mode == ssl.CERT_REQUIRED


def test_lab_client_insecure_and_plain_http(tmp_path: Path) -> None:
    path = _write(tmp_path, {"server": "https://h:1", "insecure-skip-tls-verify": True}, {})
    lab = Kubeconfig.load(path)
    assert isinstance(lab.ssl, ssl.SSLContext) and lab.ssl.verify_mode == ssl.CERT_NONE
    assert lab.token is None
    assert Kubeconfig.load(_write(tmp_path, {"server": "http://h:1"}, {"token": "t"})).ssl is False


def test_exec_credential_plugins(tmp_path: Path) -> None:
    """An exec user runs its plugin as kubectl does (KUBERNETES_EXEC_INFO, env, args) and uses
    the ExecCredential's token; a failing or malformed plugin is a clear error."""
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\n"
        'case "$KUBERNETES_EXEC_INFO" in *https://h:1*) ;; *) exit 9 ;; esac\n'
        'echo "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",'
        '\\"kind\\":\\"ExecCredential\\",\\"status\\":{\\"token\\":\\"$TOK-$1\\"}}"\n'
    )
    plugin.chmod(0o755)
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "./plugin.sh",
        "args": ["x"],
        "env": [{"name": "TOK", "value": "secret"}],
        "provideClusterInfo": True,
        "interactiveMode": "Never",
    }
    path = _write(tmp_path, {"server": "https://h:1"}, {"exec": spec})
    assert read_kubeconfig(path).token == "secret-x"
    assert Kubeconfig.load(path).token == "secret-x"
    failing = _write(tmp_path, {"server": "https://other:1"}, {"exec": spec})
    with pytest.raises(KubeconfigError, match="exit 9"):
        read_kubeconfig(failing)
    path = _write(tmp_path, {"server": "https://h:1"}, {"exec": {"command": "x"}})
    with pytest.raises(KubeconfigError, match="exec"):
        Kubeconfig.load(path)
