"""Which pods count as group members, and the `GroupMember` each one becomes.

A pod counts when it is scheduled (``spec.nodeName``), has an IP (``status.podIPs`` or
``status.podIP``), is not host-network (its address is the node's: policies cannot isolate it), and
is not terminated (phase ``Succeeded``/``Failed``: its IP may already belong to another pod).
A pod being deleted (``metadata.deletionTimestamp``) still counts until it is gone, as upstream:
during graceful termination it still sends and receives traffic.

The same rule holds for AddressGroups and AppliedToGroups, so a pod enters its applied-to groups
(and its node enters their span) when its IP is published. Upstream puts scheduled pods without
IPs into AppliedToGroups already; we chose one rule for both kinds (the issue's wording) and
accept the short window between CNI ADD and the status update, in which the pod is not yet
isolated.
"""

from __future__ import annotations

from typing import Any

from antrea.apis.controlplane.types import GroupMember, NamedPort, PodReference, Protocol

_PROTOCOLS = {"TCP": Protocol.TCP, "UDP": Protocol.UDP, "SCTP": Protocol.SCTP}
_TERMINATED = frozenset({"Succeeded", "Failed"})


def pod_member(pod: dict[str, Any]) -> GroupMember | None:
    """The member this pod contributes to groups, or ``None`` if it does not count."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    node = spec.get("nodeName")
    if not node or spec.get("hostNetwork") or status.get("phase") in _TERMINATED:
        return None
    pod_ips = status.get("podIPs")
    if pod_ips:
        ips = tuple(entry["ip"] for entry in pod_ips if entry.get("ip"))
    else:
        ip = status.get("podIP")
        ips = (ip,) if ip else ()
    if not ips:
        return None
    meta = pod["metadata"]
    return GroupMember(
        pod=PodReference(meta.get("namespace", ""), meta["name"]),
        ips=ips,
        node=node,
        ports=_named_ports(spec),
    )


def _named_ports(spec: dict[str, Any]) -> tuple[NamedPort, ...]:
    """Named container ports: what a rule's named port resolves to on this pod (by the agent)."""
    found: list[NamedPort] = []
    for container in spec.get("containers") or ():
        for port in container.get("ports") or ():
            name = port.get("name")
            number = port.get("containerPort")
            if name and isinstance(number, int):
                proto = _PROTOCOLS.get(port.get("protocol") or "TCP")
                if proto is not None:
                    found.append(NamedPort(name, proto, number))
    return tuple(found) if found else ()
