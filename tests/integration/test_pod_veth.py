"""create_pod_veth (hand-encoded rtnetlink): the pod end and host end as the kernel reports them."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from antrea.agent import netlink

pytestmark = pytest.mark.root


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """(node, pod) network namespaces, deleted afterwards."""
    node, pod = f"antrea-vethn-{os.getpid()}", f"antrea-vethp-{os.getpid()}"
    for name in (node, pod):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield node, pod
    finally:
        for name in (node, pod):
            subprocess.run(["ip", "netns", "del", name], check=False)


def _ip(netns: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", *args], check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(out))


def _create(node: str, pod: str, host_name: str, address: str, mac: str | None = None) -> object:
    with netlink.in_netns(f"/var/run/netns/{node}"):
        return netlink.create_pod_veth(
            netns=f"/var/run/netns/{pod}",
            ifname="eth0",
            host_name=host_name,
            ip=ipaddress.IPv4Interface(address),
            gateway=ipaddress.IPv4Address("10.77.0.1"),
            mtu=1450,
            pod_mac=mac,
        )


def test_pod_end_host_end_address_and_route(namespaces: tuple[str, str]) -> None:
    node, pod = namespaces
    result = _create(node, pod, "antrea-t-1", "10.77.0.5/24", mac="02:11:22:33:44:55")
    assert isinstance(result, netlink.VethResult)
    (eth0,) = [link for link in _ip(pod, "link", "show") if link["ifname"] == "eth0"]
    assert eth0["address"] == "02:11:22:33:44:55" and eth0["mtu"] == 1450
    assert "UP" in eth0["flags"]
    assert eth0["ifindex"] == result.pod_ifindex
    (host,) = [link for link in _ip(node, "link", "show") if link["ifname"] == "antrea-t-1"]
    assert host["address"] == result.host_mac and host["mtu"] == 1450
    assert "UP" in host["flags"]
    (addr,) = [a for a in _ip(pod, "addr", "show", "dev", "eth0")[0]["addr_info"]
               if a["family"] == "inet"]  # fmt: skip
    assert (addr["local"], addr["prefixlen"]) == ("10.77.0.5", 24)
    routes = _ip(pod, "route", "show", "default")
    assert routes == [{"dst": "default", "gateway": "10.77.0.1", "dev": "eth0", "flags": []}]
    sysctl = "/proc/sys/net/ipv6/conf/antrea-t-1/disable_ipv6"
    out = subprocess.run(
        ["ip", "netns", "exec", node, "cat", sysctl], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == "1"


def test_existing_pod_interface_is_file_exists(namespaces: tuple[str, str]) -> None:
    node, pod = namespaces
    _create(node, pod, "antrea-t-1", "10.77.0.5/24")
    with pytest.raises(FileExistsError):
        _create(node, pod, "antrea-t-2", "10.77.0.6/24")
    # nothing of the second attempt is left on the node
    assert "antrea-t-2" not in {link["ifname"] for link in _ip(node, "link", "show")}


def test_leftover_host_end_is_replaced(namespaces: tuple[str, str]) -> None:
    """A host end left by an interrupted attempt (its pod end elsewhere) is deleted first."""
    node, pod = namespaces
    subprocess.run(
        ["ip", "-n", node, "link", "add", "antrea-t-1", "type", "veth", "peer", "name", "junk"],
        check=True,
    )
    _create(node, pod, "antrea-t-1", "10.77.0.5/24")
    names = {link["ifname"] for link in _ip(node, "link", "show")}
    assert "antrea-t-1" in names and "junk" not in names


def test_missing_pod_namespace_is_netns_gone(namespaces: tuple[str, str]) -> None:
    node, _ = namespaces
    with pytest.raises(netlink.NetnsGone):
        _create(node, "antrea-no-such-netns", "antrea-t-1", "10.77.0.5/24")


def test_delete_link_is_idempotent_and_takes_the_pod_end(namespaces: tuple[str, str]) -> None:
    node, pod = namespaces
    _create(node, pod, "antrea-t-1", "10.77.0.5/24")
    with netlink.in_netns(f"/var/run/netns/{node}"):
        assert netlink.delete_link("antrea-t-1") is True
        assert netlink.delete_link("antrea-t-1") is False
    assert "eth0" not in {link["ifname"] for link in _ip(pod, "link", "show")}
