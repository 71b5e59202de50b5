"""The real lab's credentials: one CA, the API server's serving cert, tokens, SA keys.

Clients authenticate with bearer tokens from a kube-apiserver ``--token-auth-file`` (admin in
``system:masters``, ``system:node:<node>`` in ``system:nodes`` so the Node authorizer and
NodeRestriction apply, and the controller-manager's and scheduler's well-known users). The API
server reaches kubelets with a client certificate from the same CA, which kubelets trust as
their ``clientCAFile`` (``kubectl logs``/``exec``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from antrea.testbed.apiserver.auth import Identity, format_token_line, new_token
from antrea.testbed.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
from antrea.util import pki
from antrea.util.atomicfile import write_private

DAYS = 30
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
ADMIN = "admin"
KCM = "system:kube-controller-manager"
SCHEDULER = "system:kube-scheduler"


@dataclass(frozen=True, slots=True)
class Pki:
    """File layout under ``<lab>/pki``."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def kubelet_client_crt(self) -> Path:
        return self.dir / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.dir / "apiserver-kubelet-client.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def tokens(self) -> Path:
        return self.dir / "tokens.csv"

    def kubeconfig(self, user: str) -> Path:
        return self.dir / f"{user.replace(':', '-')}.kubeconfig"


def _client_cert(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, cn: str, org: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = pki.new_key()
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def create(
    directory: Path, *, api_ips: list[str], nodes: list[str], underlay_server: str
) -> tuple[Pki, dict[str, str]]:
    """Write every credential; return the layout and user -> token.

    Kubeconfigs for the control plane and the nodes point at ``underlay_server`` (where the API
    server listens inside the lab); the host's admin kubeconfig is written by the caller, who
    knows the forwarder's port.
    """
    p = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = pki.new_ca("antrea-lab-ca", days=DAYS)
    p.ca_crt.write_bytes(pki.cert_pem(ca))
    sans = pki.general_names(
        [*api_ips, KUBERNETES_SERVICE_IP, "127.0.0.1", "localhost", "kubernetes",
         "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    )  # fmt: skip
    cert, key = pki.issue_serving(ca, ca_key, sans, common_name="kube-apiserver", days=DAYS)
    p.apiserver_crt.write_bytes(pki.cert_pem(cert))
    write_private(p.apiserver_key, pki.key_pem(key))
    cert, key = _client_cert(ca, ca_key, cn="kube-apiserver-kubelet-client", org="system:masters")
    p.kubelet_client_crt.write_bytes(pki.cert_pem(cert))
    write_private(p.kubelet_client_key, pki.key_pem(key))
    sa = pki.new_key()
    write_private(p.sa_key, pki.key_pem(sa))
    p.sa_pub.write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    users = {
        ADMIN: Identity(user=ADMIN, uid=ADMIN, groups=("system:masters",)),
        KCM: Identity(user=KCM, uid=KCM, groups=()),
        SCHEDULER: Identity(user=SCHEDULER, uid=SCHEDULER, groups=()),
    }
    for node in nodes:
        user = f"system:node:{node}"
        users[user] = Identity(user=user, uid=user, groups=("system:nodes",))
    tokens = {u: new_token() for u in users}
    write_private(
        p.tokens, "".join(format_token_line(tokens[u], ident) for u, ident in users.items())
    )
    ca_pem = pki.cert_pem(ca)
    for user, token in tokens.items():
        write_kubeconfig(
            p.kubeconfig(user),
            render_kubeconfig(server=underlay_server, ca_pem=ca_pem, token=token, user=user),
        )
    return p, tokens
