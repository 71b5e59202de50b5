"""The agent's in-memory index of local pod interfaces (Antrea's interfacestore).

The source of truth is OVSDB: every pod port carries its identity in Interface external_ids
(container-id, pod-name, pod-namespace, ip-address, attached-mac, antrea-type), written in the
same transaction that creates the port. A restarted agent rebuilds this store from those rows,
so it never needs a state file of its own for attachments.

Listeners (e.g. the NetworkPolicy realization) are told when a local pod appears or goes away,
so rules that select it are re-realized with its ofport/IP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import structlog

log = structlog.get_logger(__name__)

EXT_CONTAINER_ID = "container-id"
EXT_POD_NAME = "pod-name"
EXT_POD_NAMESPACE = "pod-namespace"
EXT_IP = "ip-address"
EXT_MAC = "attached-mac"
EXT_TYPE = "antrea-type"
EXT_NETNS = "netns"
EXT_IFNAME = "container-ifname"
TYPE_CONTAINER = "container"


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One local pod attachment."""

    container_id: str
    pod_name: str
    pod_namespace: str
    interface_name: str  # host side (veth end on br-int), e.g. nginx6db-fd32cf
    container_ifname: str  # CNI_IFNAME inside the pod
    ip: ipaddress.IPv4Address
    mac: str
    ofport: int
    netns: str = ""

    @property
    def pod_key(self) -> str:
        return f"{self.pod_namespace}/{self.pod_name}"

    def external_ids(self) -> dict[str, str]:
        return {
            EXT_CONTAINER_ID: self.container_id,
            EXT_POD_NAME: self.pod_name,
            EXT_POD_NAMESPACE: self.pod_namespace,
            EXT_IP: str(self.ip),
            EXT_MAC: self.mac,
            EXT_TYPE: TYPE_CONTAINER,
            EXT_NETNS: self.netns,
            EXT_IFNAME: self.container_ifname,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "containerID": self.container_id,
            "podName": self.pod_name,
            "podNamespace": self.pod_namespace,
            "interfaceName": self.interface_name,
            "ifname": self.container_ifname,
            "ip": str(self.ip),
            "mac": self.mac,
            "ofport": self.ofport,
        }


def from_external_ids(name: str, ofport: int, ids: Mapping[str, str]) -> InterfaceConfig | None:
    """Rebuild a pod attachment from an OVS Interface row (None if it is not one of ours)."""
    if ids.get(EXT_TYPE) != TYPE_CONTAINER or not ids.get(EXT_CONTAINER_ID):
        return None
    try:
        ip = ipaddress.IPv4Address(ids.get(EXT_IP, ""))
    except ValueError:
        return None
    return InterfaceConfig(
        container_id=ids[EXT_CONTAINER_ID],
        pod_name=ids.get(EXT_POD_NAME, ""),
        pod_namespace=ids.get(EXT_POD_NAMESPACE, ""),
        interface_name=name,
        container_ifname=ids.get(EXT_IFNAME, "eth0"),
        ip=ip,
        mac=ids.get(EXT_MAC, ""),
        ofport=ofport,
        netns=ids.get(EXT_NETNS, ""),
    )


class Event(Enum):
    ADDED = "added"
    DELETED = "deleted"


Listener = Callable[[Event, InterfaceConfig], None]


class InterfaceStore:
    """Local pod interfaces indexed by container id, pod, ofport and IP."""

    def __init__(self) -> None:
        self._by_container: dict[str, InterfaceConfig] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, fn: Listener) -> None:
        """`fn(event, config)` is called synchronously after every add/delete."""
        self._listeners.append(fn)

    def _notify(self, event: Event, cfg: InterfaceConfig) -> None:
        for fn in self._listeners:
            try:
                fn(event, cfg)
            except Exception:
                log.exception("interface_listener_failed", event=event.value)

    def add(self, cfg: InterfaceConfig) -> None:
        self._by_container[cfg.container_id] = cfg
        self._notify(Event.ADDED, cfg)

    def delete(self, container_id: str) -> InterfaceConfig | None:
        cfg = self._by_container.pop(container_id, None)
        if cfg is not None:
            self._notify(Event.DELETED, cfg)
        return cfg

    def get(self, container_id: str) -> InterfaceConfig | None:
        return self._by_container.get(container_id)

    def by_pod(self, namespace: str, name: str) -> list[InterfaceConfig]:
        return [
            c
            for c in self._by_container.values()
            if c.pod_namespace == namespace and c.pod_name == name
        ]

    def by_ofport(self, ofport: int) -> InterfaceConfig | None:
        for c in self._by_container.values():
            if c.ofport == ofport:
                return c
        return None

    def by_ip(self, ip: ipaddress.IPv4Address | str) -> InterfaceConfig | None:
        addr = ipaddress.IPv4Address(ip) if isinstance(ip, str) else ip
        for c in self._by_container.values():
            if c.ip == addr:
                return c
        return None

    def list(self) -> list[InterfaceConfig]:
        return sorted(self._by_container.values(), key=lambda c: (c.pod_key, c.container_id))

    def __len__(self) -> int:
        return len(self._by_container)


def host_interface_name(pod_name: str, container_id: str) -> str:
    """Antrea's host-side name: pod name's first 8 chars, '-', 6 hex of sha1(container id)."""
    import hashlib

    digest = hashlib.sha1(container_id.encode()).hexdigest()
    return f"{pod_name[:8]}-{digest[:6]}"
