"""Interface store: Antrea's host interface names, OVSDB round trip, listeners."""

from __future__ import annotations

import hashlib
import ipaddress

from antrea.agent.interfacestore import (
    Event,
    InterfaceConfig,
    InterfaceStore,
    from_external_ids,
    host_interface_name,
)


def cfg(cid: str = "abc", ofport: int = 5) -> InterfaceConfig:
    return InterfaceConfig(
        container_id=cid,
        pod_name="nginx-6db489d4b7-abcde",
        pod_namespace="default",
        interface_name=host_interface_name("nginx-6db489d4b7-abcde", cid),
        container_ifname="eth0",
        ip=ipaddress.IPv4Address("10.244.1.5"),
        mac="0a:00:00:00:00:05",
        ofport=ofport,
        netns="/var/run/netns/p",
    )


def test_host_interface_name_follows_antrea() -> None:
    """First 8 chars of the pod name, '-', 6 hex of sha1(container id): at most 15 chars."""
    cid = "fd32cf0123456789"
    name = host_interface_name("nginx6db9-xyz", cid)
    assert name == "nginx6db-" + hashlib.sha1(cid.encode()).hexdigest()[:6]
    assert len(name) == 15
    assert (
        host_interface_name("a", cid).startswith("a-") and len(host_interface_name("a", cid)) == 8
    )


def test_external_ids_round_trip() -> None:
    c = cfg()
    back = from_external_ids(c.interface_name, c.ofport, c.external_ids())
    assert back == c
    assert from_external_ids("gw0", 2, {"antrea-type": "gateway"}) is None


def test_lookups_and_listeners() -> None:
    store = InterfaceStore()
    seen: list[tuple[Event, str]] = []
    store.add_listener(lambda ev, c: seen.append((ev, c.container_id)))
    store.add(cfg("a", 3))
    store.add(cfg("b", 4))
    assert store.by_ofport(4) is not None and store.by_ofport(4).container_id == "b"  # type: ignore[union-attr]
    assert store.by_ip("10.244.1.5") is not None
    assert len(store.by_pod("default", "nginx-6db489d4b7-abcde")) == 2
    store.delete("a")
    store.delete("a")
    assert seen == [(Event.ADDED, "a"), (Event.ADDED, "b"), (Event.DELETED, "a")]
    assert [c.container_id for c in store.list()] == ["b"]
