"""A minimal rtnetlink client for the CNI hot path: a few messages, encoded with `struct`.

pyroute2 costs ~8 ms of CPU per pod veth (it runs an event loop and a generic marshaller per
request), which on a busy 2-core node is most of a CNI ADD. The handful of requests ADD and
DEL need -- create a veth pair with its peer in another namespace, add an address, add a route,
set a link up, delete links (one by one or as a device group) -- are fixed shapes, so this
module encodes them directly and reads the kernel's acknowledgements: well under a millisecond
per ADD. Everything else stays on pyroute2 (`antrea.agent.netlink`).

A `Rtnl` socket belongs to the network namespace of the thread that created it (see
`netlink.in_netns`). Errors are `NetlinkError` with the kernel's errno.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from antrea.errors import AntreaError

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_GROUP = 27
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
NLA_F_NESTED = 0x8000

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


class NetlinkError(AntreaError, OSError):
    """The kernel refused a request (``errno`` is its error)."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _link_attrs(*, name: str, mtu: int, mac: str | None, netns_fd: int | None) -> bytes:
    out = _attr(IFLA_IFNAME, _name(name))
    if mtu > 0:
        out += _attr(IFLA_MTU, struct.pack("=I", mtu))
    if mac:
        out += _attr(IFLA_ADDRESS, _mac(mac))
    if netns_fd is not None:
        out += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
    return out


class Rtnl:
    """One NETLINK_ROUTE socket; requests are sent and acknowledged one batch at a time."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _message(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self._seq += 1
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK, self._seq, 0
        )
        return self._seq, header + body

    def _transact(self, messages: list[tuple[int, bytes]]) -> None:
        """Send the messages in one write; raise the first error among their acks."""
        self._sock.send(b"".join(m for _, m in messages))
        waiting = {seq for seq, _ in messages}
        first_error: NetlinkError | None = None
        while waiting:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise NetlinkError(0, "malformed netlink answer")
                if kind == NLMSG_ERROR and seq in waiting:
                    (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    waiting.discard(seq)
                    if code < 0 and first_error is None:
                        first_error = NetlinkError(-code, os.strerror(-code))
                offset += (length + 3) & ~3
        if first_error is not None:
            raise first_error

    # -- requests ----------------------------------------------------------------------
    def add_veth(
        self,
        *,
        name: str,
        mac: str,
        mtu: int,
        peer_name: str,
        peer_mac: str,
        peer_netns_fd: int,
        up: bool = True,
    ) -> None:
        """Create veth ``name`` here (up) with its peer ``peer_name`` in ``peer_netns_fd``."""
        peer = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _link_attrs(
            name=peer_name, mtu=mtu, mac=peer_mac, netns_fd=peer_netns_fd
        )
        info = _attr(IFLA_INFO_KIND, b"veth") + _attr(
            IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER, peer)
        )
        flags = IFF_UP if up else 0
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, flags, flags) + _link_attrs(
            name=name, mtu=mtu, mac=mac, netns_fd=None
        )
        body += _attr(IFLA_LINKINFO | NLA_F_NESTED, info)
        self._transact([self._message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)])

    def set_up(self, index: int) -> None:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        self._transact([self._message(RTM_NEWLINK, 0, body)])

    def delete_link(self, index: int) -> None:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        self._transact([self._message(RTM_DELLINK, 0, body)])

    def set_group(self, index: int, group: int) -> None:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        body += _attr(IFLA_GROUP, struct.pack("=I", group))
        self._transact([self._message(RTM_NEWLINK, 0, body)])

    def delete_group(self, group: int) -> None:
        """Delete every link of device group ``group`` (one kernel unregister batch)."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += _attr(IFLA_GROUP, struct.pack("=I", group))
        self._transact([self._message(RTM_DELLINK, 0, body)])

    def add_address_and_default_route(
        self, index: int, ip: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address
    ) -> None:
        """``ip addr add ip dev index`` then ``ip route add default via gateway dev index``,
        in one write (the kernel applies them in order)."""
        addr = _IFADDRMSG.pack(socket.AF_INET, ip.network.prefixlen, 0, 0, index)
        addr += _attr(IFA_LOCAL, ip.ip.packed) + _attr(IFA_ADDRESS, ip.ip.packed)
        route = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        route += _attr(RTA_GATEWAY, gateway.packed) + _attr(RTA_OIF, struct.pack("=I", index))
        self._transact(
            [
                self._message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, addr),
                self._message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route),
            ]
        )


def link_index(name: str) -> int | None:
    """The index of link ``name`` in the calling thread's namespace (None if there is none)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None
