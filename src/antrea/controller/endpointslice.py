"""The leader's EndpointSlice for Service ``<namespace>/antrea``.

The Service is selector-less (deploy/antrea.yml): no endpoints controller writes its endpoints,
the leading controller does, in both forms. Agents read Endpoints ``antrea``
(`antrea.k8s.lookup`), as does kube-apiserver's ``services/proxy`` (antctl ``--via-apiserver``),
which takes an address only with a ``targetRef`` to the Pod holding it (`pod_ref`); consumers
that read EndpointSlices (kube-proxy, DNS, meshes, monitoring) get the slice. The slice is
named ``antrea`` like the Service, so RBAC can grant get/update on that one name; it carries
``kubernetes.io/service-name`` (what consumers select on) and our own
``endpointslice.kubernetes.io/managed-by``, and the Endpoints carry
``endpointslice.kubernetes.io/skip-mirror`` so that kube-controller-manager's mirroring controller
does not add a second slice for them (as kube-apiserver does for Service ``kubernetes``).
"""

from __future__ import annotations

import ipaddress
import os

from antrea.apis.controlplane.names import ENDPOINTS_NAME, ENDPOINTS_PORT_NAME
from antrea.k8s.resources import JSON, Conflict, KubeResources, ns_path

GROUP_VERSION = "discovery.k8s.io/v1"
SLICE_NAME = ENDPOINTS_NAME
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "controller.antrea.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
"""On Endpoints ``antrea``: kube-controller-manager must not mirror them into a slice."""


def pod_ref(namespace: str) -> JSON | None:
    """The controller's own Pod as an endpoint's ``targetRef`` (``POD_NAME`` and
    ``POD_NAMESPACE`` from the downward API), or None outside a Pod.

    kube-apiserver's ``services/proxy`` takes an Endpoints address only if its targetRef names
    a Pod in the Service's namespace holding that IP; without it the proxy answered 503 ("no
    endpoints available") although the address was there.
    """
    name, pod_ns = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if not name or pod_ns != namespace:
        return None
    return {"kind": "Pod", "namespace": namespace, "name": name}


def labels() -> dict[str, str]:
    return {SERVICE_NAME_LABEL: ENDPOINTS_NAME, MANAGED_BY_LABEL: MANAGED_BY}


def endpointslice_body(namespace: str, address: str, port: int, node: str) -> JSON:
    family = ipaddress.ip_address(address).version
    endpoint: JSON = {
        "addresses": [address],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": node,
    }
    ref = pod_ref(namespace)
    if ref is not None:
        endpoint["targetRef"] = ref
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "EndpointSlice",
        "metadata": {"name": SLICE_NAME, "namespace": namespace, "labels": labels()},
        "addressType": f"IPv{family}",
        "endpoints": [endpoint],
        "ports": [{"name": ENDPOINTS_PORT_NAME, "port": port, "protocol": "TCP"}],
    }


def _path(namespace: str, name: str = "") -> str:
    return ns_path(GROUP_VERSION, namespace, "endpointslices", name)


async def publish_endpointslice(
    kube: KubeResources, namespace: str, address: str, port: int, node: str
) -> bool:
    """Make EndpointSlice ``antrea`` point at us; True when a write was needed."""
    want = endpointslice_body(namespace, address, port, node)
    cur = await kube.get(_path(namespace, SLICE_NAME))
    if cur is None:
        try:
            await kube.create(_path(namespace), want)
        except Conflict:  # another candidate created it meanwhile: compare with theirs
            return await publish_endpointslice(kube, namespace, address, port, node)
        return True
    have_labels = (cur.get("metadata") or {}).get("labels") or {}
    if (
        all(cur.get(k) == want[k] for k in ("addressType", "endpoints", "ports"))
        and have_labels.items() >= labels().items()
    ):
        return False
    body = dict(cur)
    body["metadata"] = {**cur["metadata"], "labels": {**have_labels, **labels()}}
    for k in ("addressType", "endpoints", "ports"):
        body[k] = want[k]
    await kube.replace(_path(namespace, SLICE_NAME), body)
    return True
