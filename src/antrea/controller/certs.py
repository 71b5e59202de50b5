"""The controller's TLS identity: one self-signed CA shared by all candidates, a serving cert each.

All controller candidates must be trusted through the *same* CA, or agents would have to learn a
new CA at every failover. The first candidate to start creates the CA certificate and key in
Secret ``kube-system/antrea-controller-ca`` (create is atomic: a loser of the race gets 409 and
reads the winner's). Each candidate then issues itself a short-lived serving certificate for its
own addresses. The CA certificate (never the key) is published in ConfigMap
``kube-system/antrea-ca`` key ``ca.crt``, which agents and antctl read to verify the server.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import tempfile
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from antrea.util.kuberest import Conflict, KubeResources, ns_path

log = structlog.get_logger(__name__)

CA_SECRET = "antrea-controller-ca"
CA_CONFIGMAP = "antrea-ca"
SERVICE_DNS = ("antrea.kube-system.svc", "antrea.kube-system.svc.cluster.local", "localhost")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_ca(common_name: str = "antrea-ca", days: int = 3650) -> tuple[bytes, bytes]:
    """A new self-signed CA: (certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_serving_cert(
    ca_cert_pem: bytes, ca_key_pem: bytes, hosts: list[str], days: int = 365
) -> tuple[bytes, bytes]:
    """A server certificate for ``hosts`` (IPs or DNS names) signed by the CA."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("unsupported CA key type")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "antrea-controller")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


async def ensure_ca(kube: KubeResources, namespace: str = "kube-system") -> tuple[bytes, bytes]:
    """The cluster's controller CA from its Secret, creating it if no candidate did yet."""
    path = ns_path("v1", namespace, "secrets", CA_SECRET)
    for _ in range(3):
        secret = await kube.get(path)
        if secret is not None:
            data = secret.get("data") or {}
            return base64.b64decode(data["ca.crt"]), base64.b64decode(data["ca.key"])
        cert, key = generate_ca()
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CA_SECRET, "namespace": namespace},
            "type": "Opaque",
            "data": {
                "ca.crt": base64.b64encode(cert).decode(),
                "ca.key": base64.b64encode(key).decode(),
            },
        }
        try:
            await kube.create(ns_path("v1", namespace, "secrets"), body)
        except Conflict:
            continue  # another candidate won the race: read theirs
        log.info("controller_ca_created", secret=f"{namespace}/{CA_SECRET}")
        return cert, key
    raise RuntimeError("could not create or read the controller CA secret")


async def publish_ca(
    kube: KubeResources, ca_cert_pem: bytes, namespace: str = "kube-system"
) -> None:
    """Write ConfigMap ``antrea-ca`` (key ``ca.crt``) unless it already holds this CA."""
    path = ns_path("v1", namespace, "configmaps", CA_CONFIGMAP)
    text = ca_cert_pem.decode()
    cm = await kube.get(path)
    if cm is None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CA_CONFIGMAP, "namespace": namespace},
            "data": {"ca.crt": text},
        }
        try:
            await kube.create(ns_path("v1", namespace, "configmaps"), body)
        except Conflict:
            return
        log.info("controller_ca_published", configmap=f"{namespace}/{CA_CONFIGMAP}")
        return
    if (cm.get("data") or {}).get("ca.crt") != text:
        cm = dict(cm)
        cm["data"] = {**(cm.get("data") or {}), "ca.crt": text}
        await kube.replace(path, cm)
        log.info("controller_ca_published", configmap=f"{namespace}/{CA_CONFIGMAP}")


async def read_ca(kube: KubeResources, namespace: str = "kube-system") -> bytes | None:
    cm = await kube.get(ns_path("v1", namespace, "configmaps", CA_CONFIGMAP))
    if cm is None:
        return None
    text = (cm.get("data") or {}).get("ca.crt")
    return text.encode() if text else None


def server_ssl_context(
    cert_pem: bytes, key_pem: bytes, directory: Path | None = None
) -> ssl.SSLContext:
    """An SSL server context (the ssl module only loads chains from files, so write them 0600)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_file.write_bytes(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def client_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only the controller CA (hostname checked against SANs)."""
    return ssl.create_default_context(cadata=ca_pem.decode())
