"""Service addresses, as kube-apiserver hands them out, and the ``default/kubernetes`` Service.

`ServiceNetwork` is the configuration (``--service-cluster-ip-range`` and
``--service-node-port-range``), validated when the server is built. `allocate` gives a new
Service its ClusterIP (the next free address of the range, or the requested one when it is inside
the range and free; ``clusterIP: None`` is headless) and a NodePort per port of a NodePort or
LoadBalancer Service (requested ones must be in the range and free). `kubernetes_objects` are the
Service and EndpointSlice through which pods reach the API server itself: the first address of
the range, port 443 -> the advertised address and port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from antrea.testbed.apiserver import errors

JSON = dict[str, Any]
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


@dataclass(frozen=True, slots=True)
class ServiceNetwork:
    cidr: IPNet
    node_ports: range

    @classmethod
    def parse(
        cls, cidr: str = DEFAULT_SERVICE_CIDR, node_port_range: str = DEFAULT_NODE_PORT_RANGE
    ) -> ServiceNetwork:
        """Validate the two settings (ValueError with the setting's name when wrong)."""
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"service CIDR {cidr!r}: {exc}") from None
        if net.num_addresses < 8:
            raise ValueError(f"service CIDR {cidr!r}: fewer than 8 addresses")
        if net.version == 6 and net.prefixlen < 108:
            raise ValueError(f"service CIDR {cidr!r}: an IPv6 range may be at most /108")
        lo, sep, hi = node_port_range.partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"node port range {node_port_range!r}: not N-M") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"node port range {node_port_range!r}: not within 1-65535")
        return cls(net, range(first, last + 1))

    @property
    def kubernetes_ip(self) -> str:
        """The first address of the range: the ``default/kubernetes`` Service's ClusterIP."""
        return str(self.cidr.network_address + 1)


def _invalid(obj: JSON, field: str, value: str, why: str) -> errors.APIError:
    name = obj["metadata"]["name"]
    return errors.invalid(
        group="",
        kind="Service",
        name=name,
        message=f'Service "{name}" is invalid: {field}: Invalid value: {value}: {why}',
        causes=[{"reason": "FieldValueInvalid", "field": field, "message": why}],
    )


def used_addresses(services: list[JSON]) -> tuple[set[str], set[tuple[str, int]]]:
    """ClusterIPs and (protocol, nodePort) pairs taken by the given Services."""
    ips: set[str] = set()
    ports: set[tuple[str, int]] = set()
    for svc in services:
        spec = svc.get("spec") or {}
        ips.update(ip for ip in spec.get("clusterIPs") or () if ip != "None")
        for p in spec.get("ports") or ():
            if isinstance(p, dict) and isinstance(p.get("nodePort"), int):
                ports.add((str(p.get("protocol", "TCP")), p["nodePort"]))
    return ips, ports


def allocate(
    obj: JSON,
    net: ServiceNetwork,
    used_ips: set[str],
    used_ports: set[tuple[str, int]],
    *,
    old: JSON | None = None,
) -> None:
    """Fill in ``obj``'s ClusterIP and NodePorts (on create, or ``old`` on update)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("type", "ClusterIP") == "ExternalName":
        return
    old_spec = (old or {}).get("spec") or {}
    if old is not None and not spec.get("clusterIP") and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]  # kept on update, as upstream defaults it
        spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
    if old is None or not old_spec.get("clusterIP"):
        _allocate_ip(obj, spec, net, used_ips)
    _allocate_node_ports(obj, spec, net, used_ports, old_spec)


def _allocate_ip(obj: JSON, spec: JSON, net: ServiceNetwork, used: set[str]) -> None:
    wanted = spec.get("clusterIP")
    if wanted is not None and not isinstance(wanted, str):
        return  # validation reports it
    if wanted == "None":
        spec["clusterIPs"] = ["None"]
        return
    if wanted:
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            return  # validation reports it
        if addr not in net.cidr:
            raise _invalid(
                obj,
                "spec.clusterIPs",
                f'[]string{{"{wanted}"}}',
                f"failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the "
                f"valid range. The range of valid IPs is {net.cidr}",
            )
        if wanted in used:
            raise _invalid(
                obj,
                "spec.clusterIPs",
                f'[]string{{"{wanted}"}}',
                f"failed to allocate IP {wanted}: provided IP is already allocated",
            )
        spec["clusterIPs"] = [wanted]
        return
    base = int(net.cidr.network_address)
    for host in net.cidr.hosts():
        offset = int(host) - base
        if offset < 10 and offset != 1:
            continue  # keep the low range for static assignment, like upstream
        ip = str(host)
        if ip not in used:
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            return
    raise errors.internal(f"service CIDR {net.cidr} exhausted")


def _allocate_node_ports(
    obj: JSON, spec: JSON, net: ServiceNetwork, used: set[tuple[str, int]], old_spec: JSON
) -> None:
    ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
    if spec.get("type", "ClusterIP") not in NODE_PORT_TYPES:
        for p in ports:
            p.pop("nodePort", None)
        return
    old_ports = {
        (str(p.get("protocol", "TCP")), p.get("port")): p.get("nodePort")
        for p in old_spec.get("ports") or ()
        if isinstance(p, dict)
    }
    mine = {(proto, n) for (proto, _), n in old_ports.items() if isinstance(n, int)}
    taken = (used - mine) | set()
    for i, p in enumerate(ports):
        proto = str(p.get("protocol", "TCP"))
        wanted = p.get("nodePort")
        if not wanted:
            wanted = old_ports.get((proto, p.get("port")))
        if isinstance(wanted, int) and wanted:
            if wanted not in net.node_ports:
                raise _invalid(
                    obj,
                    f"spec.ports[{i}].nodePort",
                    str(wanted),
                    f"provided port is not in the valid range. The range of valid ports is "
                    f"{net.node_ports.start}-{net.node_ports.stop - 1}",
                )
            if (proto, wanted) in taken:
                raise _invalid(
                    obj,
                    f"spec.ports[{i}].nodePort",
                    str(wanted),
                    "provided port is already allocated",
                )
            p["nodePort"] = wanted
            taken.add((proto, wanted))
            continue
        free = next((n for n in net.node_ports if (proto, n) not in taken), None)
        if free is None:
            raise errors.internal("node port range exhausted")
        p["nodePort"] = free
        taken.add((proto, free))


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"


def kubernetes_objects(
    net: ServiceNetwork, address: str, port: int
) -> list[tuple[tuple[str, str], JSON]]:
    """``default/kubernetes``: the Service (port 443) and its EndpointSlice -> the server."""
    svc: JSON = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": net.kubernetes_ip,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    }
    family = "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
    slice_: JSON = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                SERVICE_NAME_LABEL: "kubernetes",
                MANAGED_BY_LABEL: "endpointslicemirroring-controller.k8s.io",
            },
        },
        "addressType": family,
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    return [(("", "services"), svc), (("discovery.k8s.io", "endpointslices"), slice_)]
