"""The C executable and the Python side of the CNI contract agree on every shared constant.

``shim/antrea-cni.c`` cannot import ``antrea.apis.cni``, so its copies of the protocol's
constants are read from its source and compared with the Python ones: a change on one side
only fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import antrea
from antrea.agent.cniserver import install
from antrea.apis.cni import protocol, shimproto, versions

C_SOURCE = (Path(antrea.__file__).parent / "cni" / "shim" / "antrea-cni.c").read_text()


def _define(name: str) -> str:
    m = re.search(rf"^#define {name} (.+?)\s*(?:/\*.*)?$", C_SOURCE, re.M)
    assert m, f"#define {name} not in antrea-cni.c"
    return m.group(1).strip()


def _c_int(expr: str) -> int:
    """``(4u << 20)`` or ``4096``-style constants."""
    m = re.fullmatch(r"\(?(\d+)u?(?: << (\d+))?\)?", expr)
    assert m, f"unexpected constant {expr!r}"
    return int(m.group(1)) << int(m.group(2) or 0)


def test_request_header_magic_and_flags() -> None:
    header = re.search(r'"(ANTREA-CNI/2 )%zu %zu %d\\n"', C_SOURCE)
    assert header and header.group(1).encode() == shimproto.MAGIC
    flags = re.search(r"\(too_large \? (\d) : 0\) \| \(read_error \? (\d) : 0\)", C_SOURCE)
    assert flags, "the shim's flags expression changed: update this test and shimproto"
    assert int(flags.group(1)) == shimproto.FLAG_STDIN_TOO_LARGE
    assert int(flags.group(2)) == shimproto.FLAG_STDIN_READ_ERROR


def test_limits_and_timeouts() -> None:
    assert _c_int(_define("MAX_STDIN")) == shimproto.MAX_STDIN_BYTES
    assert _c_int(_define("MAX_ENV")) == shimproto.MAX_ENV_BYTES
    assert float(_define("DEFAULT_TIMEOUT")) == protocol.DEFAULT_TIMEOUT_SECONDS


def test_acknowledgement() -> None:
    ack = re.search(r'send\(fd, "(.)", 1, MSG_NOSIGNAL\)', C_SOURCE)
    assert ack and ack.group(1).encode() == shimproto.ACK


def test_versions() -> None:
    supported = re.search(r"SUPPORTED\[\] = \{(.*?)\};", C_SOURCE)
    assert supported
    assert tuple(re.findall(r'"([^"]+)"', supported.group(1))) == versions.SUPPORTED_VERSIONS
    assert _define("LATEST").strip('"') == versions.LATEST


def test_default_socket_and_its_install_slot() -> None:
    assert _define("SLOT_MARKER").strip('"').encode() == install.SOCKET_SLOT_MARKER
    slot = re.search(r'SLOT_MARKER "([^"]+)";', C_SOURCE)
    assert slot and slot.group(1) == protocol.DEFAULT_SOCKET
