"""What a published object says: an Endpoints object's first address, one ConfigMap value.

How the control plane is found (the controller publishes its address in an Endpoints object and
its CA in a ConfigMap; which ones is `antrea.apis.controlplane.names`) is read the same way by
the agent and by antctl, through these two lookups.
"""

from __future__ import annotations

from antrea.k8s.resources import KubeResources, ns_path


async def endpoints_address(
    kube: KubeResources, namespace: str, name: str, *, port_name: str
) -> tuple[str, int] | None:
    """(address, port) of Endpoints ``namespace/name``: the port named ``port_name``, else the
    first port; None when it is missing or has no ready address."""
    ep = await kube.get(ns_path("v1", namespace, "endpoints", name))
    for subset in (ep or {}).get("subsets") or []:
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or []
        port = next((p["port"] for p in ports if p.get("name") == port_name), None)
        if port is None and ports:
            port = ports[0].get("port")
        if addresses and port:
            return str(addresses[0]["ip"]), int(port)
    return None


async def config_map_value(kube: KubeResources, namespace: str, name: str, key: str) -> str | None:
    """``data[key]`` of ConfigMap ``namespace/name``; None when missing or empty."""
    cm = await kube.get(ns_path("v1", namespace, "configmaps", name))
    text = ((cm or {}).get("data") or {}).get(key)
    return str(text) if text else None
