"""Kubeconfig files become kubernetes-asyncio clients with the right server, token and CA."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from antrea.k8s.client import (
    KubeconfigError,
    bearer_token,
    configuration_from_kubeconfig,
    load_kubeconfig_client,
)


def _ca_pem() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


CA_PEM = _ca_pem()


def _write(tmp_path: Path, user: dict[str, str], cluster: dict[str, str] | None = None) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": cluster
                or {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": base64.b64encode(CA_PEM).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_token_and_embedded_ca(tmp_path: Path) -> None:
    """A token user with embedded CA data (what the embedded API server writes)."""
    path = _write(tmp_path, {"token": "s3cret"})
    api = load_kubeconfig_client(str(path))
    try:
        conf = api.configuration
        assert conf.host == "https://127.0.0.1:6443"
        assert Path(conf.ssl_ca_cert).read_bytes() == CA_PEM
        assert os.stat(conf.ssl_ca_cert).st_mode & 0o077 == 0
        assert bearer_token(api) == "s3cret"
        assert (await conf.auth_settings())["BearerToken"]["value"] == "Bearer s3cret"
    finally:
        await api.close()


def test_token_file_and_relative_ca(tmp_path: Path) -> None:
    """tokenFile and certificate-authority paths are relative to the kubeconfig."""
    (tmp_path / "token").write_text("t0k\n")
    (tmp_path / "ca.crt").write_text("x")
    path = _write(
        tmp_path,
        {"tokenFile": "token"},
        {"server": "https://h:1", "certificate-authority": "ca.crt", "tls-server-name": "api"},
    )
    conf = configuration_from_kubeconfig(path)
    assert conf.api_key == {"BearerToken": "Bearer t0k"}
    assert conf.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert conf.tls_server_name == "api"


def test_errors(tmp_path: Path) -> None:
    """Missing files, contexts and unsupported auth are reported clearly."""
    with pytest.raises(KubeconfigError):
        configuration_from_kubeconfig(tmp_path / "nope")
    path = _write(tmp_path, {"exec": "x"})
    with pytest.raises(KubeconfigError, match="exec"):
        configuration_from_kubeconfig(path)
    path = _write(tmp_path, {"token": "t"})
    with pytest.raises(KubeconfigError, match="context"):
        configuration_from_kubeconfig(path, context="other")


async def test_incluster_without_service_account() -> None:
    """No kubeconfig outside a pod is a clear error."""
    if os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
        pytest.skip("running in a pod")
    with pytest.raises(KubeconfigError, match="not running in a pod"):
        load_kubeconfig_client(None)
