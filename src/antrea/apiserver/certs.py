"""Self-signed CA and serving certificate for the embedded API server.

ECDSA P-256 keys: generated in milliseconds (the lab starts a server per run) and accepted
by Go's and Python's TLS stacks alike. The serving certificate is reissued whenever the set
of requested subject alternative names changes, so adding ``--extra-san`` just works.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DNS_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
DEFAULT_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class ServingCerts:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "antrea-apiserver-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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


def _sans(extra: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for value in (*DEFAULT_IPS, *DEFAULT_DNS_NAMES, *extra):
        if value in seen:
            continue
        seen.add(value)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.append(x509.DNSName(value))
    return names


def _issue(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, sans: list[x509.GeneralName]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "antrea-apiserver")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def ensure_certs(cert_dir: Path | None, *, extra_sans: tuple[str, ...] = ()) -> ServingCerts:
    """Load or create the CA and a serving certificate valid for the requested names.

    With ``cert_dir=None`` everything lives in memory only (a throw-away server).
    Files: ``ca.crt``, ``ca.key``, ``apiserver.crt``, ``apiserver.key``.
    """
    wanted = _sans(extra_sans)
    if cert_dir is None:
        ca, ca_key = _new_ca()
        cert, key = _issue(ca, ca_key, wanted)
        return ServingCerts(
            ca.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.PEM),
            _key_pem(key),
        )
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key_path = cert_dir / "ca.crt", cert_dir / "ca.key"
    if ca_crt.exists() and ca_key_path.exists():
        ca = x509.load_pem_x509_certificate(ca_crt.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path}: expected an EC private key")
        ca_key = loaded
    else:
        ca, ca_key = _new_ca()
        _write_private(ca_key_path, _key_pem(ca_key))
        ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    srv_crt, srv_key = cert_dir / "apiserver.crt", cert_dir / "apiserver.key"
    if srv_crt.exists() and srv_key.exists():
        current = x509.load_pem_x509_certificate(srv_crt.read_bytes())
        try:
            have = set(
                current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            )
        except x509.ExtensionNotFound:
            have = set()
        fresh = current.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        if set(wanted) <= have and fresh and current.issuer == ca.subject:
            return ServingCerts(
                ca.public_bytes(serialization.Encoding.PEM),
                srv_crt.read_bytes(),
                srv_key.read_bytes(),
            )
    cert, key = _issue(ca, ca_key, wanted)
    _write_private(srv_key, _key_pem(key))
    srv_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ServingCerts(
        ca.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        _key_pem(key),
    )
