"""Small PKI primitives shared by the embedded API server and the controller.

Both run their own self-signed CA and issue themselves serving certificates; only where the
CA lives differs (files on disk vs. a Kubernetes Secret), so the X.509 work lives here once.

ECDSA P-256 keys: generated in milliseconds (the lab starts servers per run) and accepted by
Go's and Python's TLS stacks alike. CA certificates carry a Subject Key Identifier and leaf
certificates the matching Authority Key Identifier, which strict verifiers (Python's
``VERIFY_X509_STRICT``, the default from 3.13) require.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from antrea.util.atomicfile import write_private

# Backdate validity a little so a peer whose clock lags slightly still accepts a fresh cert.
_CLOCK_SKEW = dt.timedelta(minutes=5)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (the files and Secrets holding it are private)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def load_ec_key(pem: bytes, source: str = "CA key") -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key, insisting on EC (the only kind this module issues)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{source}: expected an EC private key")
    return key


def general_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """Subject alternative names for ``hosts`` (IP literals or DNS names), duplicates dropped."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def new_ca(
    common_name: str, days: int = 3650
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA allowed to sign leaf certificates only (path length 0)."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_serving(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    *,
    common_name: str,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate with a fresh key, valid for ``sans``, signed by the CA."""
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def subject_alt_names(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


def load_cert_chain_pem(
    ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, directory: Path | None = None
) -> None:
    """`ssl.SSLContext.load_cert_chain` from memory.

    The ssl module only reads chains from files: hand it short-lived private temporary ones
    (in ``directory`` if given), removed before returning.
    """
    with tempfile.TemporaryDirectory(prefix="antrea-tls-", dir=directory) as tmp:
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_file.write_bytes(cert_pem)
        write_private(key_file, key_pem)
        ctx.load_cert_chain(cert_file, key_file)


def server_ssl_context(
    cert_pem: bytes,
    key_pem: bytes,
    directory: Path | None = None,
    *,
    alpn: list[str] | None = None,
) -> ssl.SSLContext:
    """A TLS server context serving ``cert_pem`` (which may carry its chain appended)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    load_cert_chain_pem(ctx, cert_pem, key_pem, directory)
    return ctx


def client_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem`` (hostname checked against the SANs)."""
    return ssl.create_default_context(cadata=ca_pem.decode())
