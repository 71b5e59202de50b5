"""The controller's TLS identity: one self-signed CA shared by all candidates, a serving cert each.

All controller candidates must be trusted through the *same* CA, or agents would have to learn a
new CA at every failover. The first candidate to start creates the CA certificate and key in
Secret ``kube-system/antrea-controller-ca`` (create is atomic: a loser of the race gets 409 and
reads the winner's). Each candidate then issues itself a short-lived serving certificate for its
own addresses. The CA certificate (never the key) is published in ConfigMap
``kube-system/antrea-ca`` key ``ca.crt``, which agents and antctl read to verify the server.
The leader also injects it as the ``caBundle`` of every webhook of the admission webhook
configurations (`WEBHOOK_CONFIGURATIONS`), so the API server can verify the controller when it
calls the admission webhooks.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import structlog

from antrea.apis.controlplane.names import CA_CONFIGMAP, CA_CONFIGMAP_KEY, NAMESPACE
from antrea.k8s.resources import Conflict, KubeResources, ns_path
from antrea.util import pki

log = structlog.get_logger(__name__)

CA_SECRET = "antrea-controller-ca"
SERVICE_DNS = ("antrea.kube-system.svc", "antrea.kube-system.svc.cluster.local", "localhost")
ADMISSION_GV = "/apis/admissionregistration.k8s.io/v1"
# deploy/antrea.yml's admission webhook configurations, whose caBundle the leader keeps.
WEBHOOK_CONFIGURATIONS = (
    ("validatingwebhookconfigurations", "crdvalidator.antrea.io"),
    ("mutatingwebhookconfigurations", "crdmutator.antrea.io"),
)


def generate_ca(common_name: str = "antrea-ca", days: int = 3650) -> tuple[bytes, bytes]:
    """A new self-signed CA: (certificate PEM, private key PEM)."""
    cert, key = pki.new_ca(common_name, days)
    return pki.cert_pem(cert), pki.key_pem(key)


def issue_serving_cert(
    ca_cert_pem: bytes, ca_key_pem: bytes, hosts: list[str], days: int = 365
) -> tuple[bytes, bytes]:
    """A server certificate for ``hosts`` (IPs or DNS names) signed by the CA."""
    cert, key = pki.issue_serving(
        pki.load_cert(ca_cert_pem),
        pki.load_ec_key(ca_key_pem),
        pki.general_names(hosts),
        common_name="antrea-controller",
        days=days,
    )
    return pki.cert_pem(cert), pki.key_pem(key)


async def ensure_ca(kube: KubeResources, namespace: str = NAMESPACE) -> tuple[bytes, bytes]:
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


async def publish_ca(kube: KubeResources, ca_cert_pem: bytes, namespace: str = NAMESPACE) -> None:
    """Write ConfigMap ``antrea-ca`` (key ``ca.crt``) unless it already holds this CA."""
    path = ns_path("v1", namespace, "configmaps", CA_CONFIGMAP)
    text = ca_cert_pem.decode()
    cm = await kube.get(path)
    if cm is None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CA_CONFIGMAP, "namespace": namespace},
            "data": {CA_CONFIGMAP_KEY: text},
        }
        try:
            await kube.create(ns_path("v1", namespace, "configmaps"), body)
        except Conflict:
            return
        log.info("controller_ca_published", configmap=f"{namespace}/{CA_CONFIGMAP}")
        return
    if (cm.get("data") or {}).get(CA_CONFIGMAP_KEY) != text:
        cm = dict(cm)
        cm["data"] = {**(cm.get("data") or {}), CA_CONFIGMAP_KEY: text}
        await kube.replace(path, cm)
        log.info("controller_ca_published", configmap=f"{namespace}/{CA_CONFIGMAP}")


async def inject_ca_bundle(kube: KubeResources, ca_cert_pem: bytes) -> int:
    """Set ``caBundle`` of the webhooks of `WEBHOOK_CONFIGURATIONS` to the CA (a missing
    configuration is skipped); returns how many configurations were updated."""
    bundle = base64.b64encode(ca_cert_pem).decode()
    updated = 0
    for resource, name in WEBHOOK_CONFIGURATIONS:
        path = f"{ADMISSION_GV}/{resource}/{name}"
        config = await kube.get(path)
        if config is None:
            continue
        hooks = [h for h in config.get("webhooks") or () if isinstance(h, dict)]
        if all((h.get("clientConfig") or {}).get("caBundle") == bundle for h in hooks):
            continue
        config = dict(config)
        config["webhooks"] = [
            {**h, "clientConfig": {**(h.get("clientConfig") or {}), "caBundle": bundle}}
            for h in hooks
        ]
        await kube.replace(path, config)
        updated += 1
        log.info("webhook_ca_injected", configuration=f"{resource}/{name}")
    return updated


async def read_ca(kube: KubeResources, namespace: str = NAMESPACE) -> bytes | None:
    cm = await kube.get(ns_path("v1", namespace, "configmaps", CA_CONFIGMAP))
    if cm is None:
        return None
    text = (cm.get("data") or {}).get("ca.crt")
    return text.encode() if text else None


def server_ssl_context(
    cert_pem: bytes, key_pem: bytes, directory: Path | None = None
) -> ssl.SSLContext:
    """An SSL server context for the controller's serving certificate."""
    return pki.server_ssl_context(cert_pem, key_pem, directory)


def client_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only the controller CA (hostname checked against SANs)."""
    return pki.client_ssl_context(ca_pem)
