"""Turn off TX checksum offload on a veth, without the ethtool binary (SIOCETHTOOL ioctl).

Why: the userspace datapath reads and writes veths through AF_PACKET sockets. A packet that a
kernel stack sends into a veth with TX checksum offload on carries only a partial checksum
(CHECKSUM_PARTIAL), and AF_PACKET hands it to OVS as is; forwarded elsewhere it arrives with
a bad TCP/UDP checksum and is dropped. ICMP still works, which makes it confusing. Turning TX
checksumming off on the sending veth makes the kernel compute full checksums. (Pod veths
attached to a netdev br-int need it on the pod side for the same reason.)

Call it from a thread that is inside the interface's network namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x00000017
IFREQ_SIZE = 40


class _EthtoolValue(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("data", ctypes.c_uint32)]


def disable_tx_checksum(ifname: str) -> None:
    """Disable TX checksum offload on ``ifname`` in the calling thread's namespace."""
    value = _EthtoolValue(ETHTOOL_STXCSUM, 0)
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    ifr += b"\0" * (IFREQ_SIZE - len(ifr))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
