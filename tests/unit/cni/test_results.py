"""Result conversion as pure functions (the plugin tests cover it end to end)."""

from __future__ import annotations

import pytest

from antrea.apis.cni import results
from antrea.apis.cni.errors import CniError
from antrea.apis.cni.versions import SUPPORTED_VERSIONS


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_round_trip_through_any_version_keeps_addresses(full_result, version):
    """Down to ``version`` and back up loses only fields ``version`` cannot express."""
    back = results.to_latest(results.to_version(full_result, version))
    assert back["ips"] == full_result["ips"]
    assert [i["name"] for i in back["interfaces"]] == ["nginx-a-3f2c1d", "eth0"]
    assert [r["dst"] for r in back["routes"]] == ["0.0.0.0/0", "::/0"]
    assert back["dns"] == full_result["dns"]


def test_ipam_style_result_without_interfaces(full_result):
    """An IPAM-shaped result (no interfaces, no interface index) converts too."""
    ipam = {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}]}
    assert results.to_version(ipam, "0.3.1") == {
        "cniVersion": "0.3.1",
        "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "dns": {},
    }


def test_empty_result():
    assert results.to_version({}, "1.0.0") == {"cniVersion": "1.0.0"}
    assert results.to_latest({}) == {"cniVersion": "1.1.0"}


def test_to_latest_rejects_bool_interface_index():
    prev = {
        "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.0.0.2/24", "interface": True}],
    }
    with pytest.raises(CniError) as err:
        results.to_latest(prev)
    assert err.value.code == 7


def test_to_version_drops_unknown_fields(full_result):
    full_result["ips"][0]["extra"] = 1
    full_result["bogus"] = True
    out = results.to_version(full_result, "1.1.0")
    assert "bogus" not in out
    assert "extra" not in out["ips"][0]
