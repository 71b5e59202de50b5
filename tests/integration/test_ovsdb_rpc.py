"""The JSON-RPC OVSDB client against a real ovsdb-server + ovs-vswitchd (userspace datapath)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.ovs.ovsconfig import OvsdbClient
from antrea.ovs.ovsdb import OvsdbConnection, OvsdbUnavailable
from antrea.testbed.ovssandbox import OvsSandbox

pytestmark = [pytest.mark.root, pytest.mark.ovs]


@pytest.fixture
def ovs(tmp_path: Path) -> Iterator[OvsSandbox]:
    netns = f"antrea-ovsdb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    sb = OvsSandbox(rundir=tmp_path / "ovs", netns=netns)
    try:
        sb.start()
        sb.vsctl("add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev")
        for i in range(3):
            subprocess.run(
                [
                    "ip",
                    "-n",
                    netns,
                    "link",
                    "add",
                    f"h{i}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"p{i}",
                ],
                check=True,
            )
        yield sb
    finally:
        sb.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)


async def test_port_lifecycle_over_json_rpc(ovs: OvsSandbox) -> None:
    conn = OvsdbConnection(str(ovs.rundir / "db.sock"))
    await conn.connect()
    try:
        ids = {"container-id": "c1", "pod-name": "my pod"}
        assert await conn.add_port("br-int", "h0", ofport_request=7, external_ids=ids) == 7
        assert ovs.vsctl("get", "Interface", "h0", "ofport").strip() == "7"
        assert 'pod-name="my pod"' in ovs.vsctl("get", "Interface", "h0", "external_ids")
        assert await conn.interface_ofport("h0") == 7
        # the port exists: the precondition fails and nothing changes (callers fall back)
        with pytest.raises(OvsdbUnavailable):
            await conn.add_port("br-int", "h0", ofport_request=8)
        with pytest.raises(OvsdbUnavailable):
            await conn.add_port("br-nope", "h1", ofport_request=8)
        assert ovs.vsctl("list-ports", "br-int").split() == ["h0"]
        # no such network device: ovs-vswitchd reports ofport -1
        assert await conn.add_port("br-int", "missing0", ofport_request=9) == -1
        assert await conn.del_port("br-int", "missing0") is True
        assert await conn.del_port("br-int", "h0") is True
        assert await conn.del_port("br-int", "h0") is False
        assert ovs.vsctl("list-ports", "br-int").split() == []
        # concurrent adds: independent transactions, each waits for its own ofport
        got = await asyncio.gather(
            conn.add_port("br-int", "h1", ofport_request=11),
            conn.add_port("br-int", "h2", ofport_request=12),
        )
        assert list(got) == [11, 12]
    finally:
        await conn.close()


async def test_client_falls_back_to_vsctl_for_an_existing_port(ovs: OvsSandbox) -> None:
    ovs.vsctl("add-port", "br-int", "h0", "--", "set", "Interface", "h0", "ofport_request=5")
    client = OvsdbClient(ovs.db_sock)
    try:
        # --may-exist semantics: the port is kept, its settings updated
        ofport = await client.attach_port(
            "br-int", "h0", ofport_request=5, external_ids={"container-id": "c9"}
        )
        assert ofport == 5
        assert "c9" in ovs.vsctl("get", "Interface", "h0", "external_ids")
        await client.remove_port("br-int", "h0")
        await client.remove_port("br-int", "h0")
        assert ovs.vsctl("list-ports", "br-int").split() == []
    finally:
        await client.close()
