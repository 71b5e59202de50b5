"""Kubeconfig files become kubernetes-asyncio clients with the right server, token and CA."""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any

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
        assert conf.ssl_ca_cert is None  # held in memory (tls_context), not in a file
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


def _client_cert(ca: Any, ca_key: Any) -> tuple[Any, Any]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from antrea.util import pki

    key = pki.new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


async def test_inline_tls_material_leaves_no_file_and_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CA, client certificate and key given inline: the client trusts that CA and presents
    that certificate (the server requires both), and no file is left in the temporary
    directory, neither while the client is open nor after it closed (214 ``antrea-kube-*.crt``
    files had piled up in /tmp from processes that never reached their atexit cleanup)."""
    import ssl

    from aiohttp import web
    from kubernetes_asyncio.client import VersionApi

    from antrea.k8s.client import tls_context
    from antrea.util import pki

    ca, ca_key = pki.new_ca("test-ca")
    ca_pem = pki.cert_pem(ca)
    serving, serving_key = pki.issue_serving(
        ca, ca_key, pki.general_names(["127.0.0.1"]), common_name="api", days=1
    )
    client_cert, client_key = _client_cert(ca, ca_key)
    server_ctx = pki.server_ssl_context(pki.cert_pem(serving), pki.key_pem(serving_key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=ca_pem.decode())
    # server_ssl_context uses the temporary directory too: watch only from here on
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))

    async def version(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        assert peer, "no client certificate"
        keys = ("buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion", "platform")
        return web.json_response(
            {"major": "1", "minor": "36", "gitVersion": "v1.36.0", **dict.fromkeys(keys, "x")}
        )

    app = web.Application()
    app.router.add_get("/version/", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    b64 = lambda pem: base64.b64encode(pem).decode()  # noqa: E731
    path = _write(
        tmp_path,
        {"client-certificate-data": b64(pki.cert_pem(client_cert)),
         "client-key-data": b64(pki.key_pem(client_key))},
        {"server": f"https://127.0.0.1:{port}", "certificate-authority-data": b64(ca_pem)},
    )  # fmt: skip
    try:
        api = load_kubeconfig_client(str(path))
        try:
            assert tls_context(api) is not None
            assert list(tmpdir.iterdir()) == []
            info = await VersionApi(api).get_code()
            assert info.git_version == "v1.36.0"
            assert list(tmpdir.iterdir()) == []
        finally:
            await api.close()
        assert list(tmpdir.iterdir()) == []
    finally:
        await runner.cleanup()
