"""Self-signed CA and serving certificate for the embedded API server, kept in files.

The X.509 work is `antrea.util.pki`; this module decides what lives where. The serving
certificate is reissued whenever the set of requested subject alternative names changes (so
adding ``--extra-san`` just works), when it nears expiry, or when the CA changed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from antrea.util import pki
from antrea.util.atomicfile import write_private

DEFAULT_DNS_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
DEFAULT_IPS = ("127.0.0.1", "::1")
_CA_NAME = "antrea-apiserver-ca"
_SERVING_NAME = "antrea-apiserver"
_SERVING_DAYS = 825
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class ServingCerts:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _issue(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, sans: list[x509.GeneralName]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return pki.issue_serving(ca, ca_key, sans, common_name=_SERVING_NAME, days=_SERVING_DAYS)


def _load_or_create_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_crt, ca_key_path = cert_dir / "ca.crt", cert_dir / "ca.key"
    if ca_crt.exists() and ca_key_path.exists():
        return pki.load_cert(ca_crt.read_bytes()), pki.load_ec_key(
            ca_key_path.read_bytes(), str(ca_key_path)
        )
    ca, ca_key = pki.new_ca(_CA_NAME)
    write_private(ca_key_path, pki.key_pem(ca_key))
    ca_crt.write_bytes(pki.cert_pem(ca))
    return ca, ca_key


def ensure_certs(cert_dir: Path | None, *, extra_sans: tuple[str, ...] = ()) -> ServingCerts:
    """Load or create the CA and a serving certificate valid for the requested names.

    With ``cert_dir=None`` everything lives in memory only (a throw-away server).
    Files: ``ca.crt``, ``ca.key``, ``apiserver.crt``, ``apiserver.key``.
    """
    wanted = pki.general_names((*DEFAULT_IPS, *DEFAULT_DNS_NAMES, *extra_sans))
    if cert_dir is None:
        ca, ca_key = pki.new_ca(_CA_NAME)
        cert, key = _issue(ca, ca_key, wanted)
        return ServingCerts(pki.cert_pem(ca), pki.cert_pem(cert), pki.key_pem(key))
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _load_or_create_ca(cert_dir)
    srv_crt, srv_key = cert_dir / "apiserver.crt", cert_dir / "apiserver.key"
    if srv_crt.exists() and srv_key.exists():
        current = pki.load_cert(srv_crt.read_bytes())
        fresh = current.not_valid_after_utc > dt.datetime.now(dt.UTC) + _RENEW_BEFORE
        if set(wanted) <= pki.subject_alt_names(current) and fresh and current.issuer == ca.subject:
            return ServingCerts(pki.cert_pem(ca), srv_crt.read_bytes(), srv_key.read_bytes())
    cert, key = _issue(ca, ca_key, wanted)
    write_private(srv_key, pki.key_pem(key))
    srv_crt.write_bytes(pki.cert_pem(cert))
    return ServingCerts(pki.cert_pem(ca), pki.cert_pem(cert), pki.key_pem(key))
