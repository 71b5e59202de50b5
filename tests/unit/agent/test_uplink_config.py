"""agent/uplink.py: the recorded uplink configuration and the option that selects the bridge."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.config import AgentConfig
from antrea.agent.uplink import UplinkConfig

_ip = st.ip_addresses(v=4).map(str)


@given(
    addrs=st.lists(st.tuples(_ip, st.integers(0, 32)).map(lambda t: f"{t[0]}/{t[1]}"), max_size=4),
    routes=st.lists(st.tuples(_ip.map(lambda a: f"{a}/32"), _ip), max_size=4),
    mtu=st.integers(68, 9000),
)
def test_the_recorded_configuration_round_trips(
    addrs: list[str], routes: list[tuple[str, str]], mtu: int
) -> None:
    cfg = UplinkConfig("eth0", "02:00:00:00:00:01", mtu, tuple(addrs), tuple(routes))
    assert UplinkConfig.decode(cfg.encode()) == cfg


def test_auto_means_br_phy_only_for_netdev_encap() -> None:
    assert AgentConfig(ovsDatapathType="netdev").uplink_bridge == "br-phy"
    assert AgentConfig(ovsDatapathType="netdev", trafficEncapMode="noEncap").uplink_bridge == ""
    assert AgentConfig(ovsDatapathType="system").uplink_bridge == ""
    assert AgentConfig(ovsDatapathType="netdev", uplinkBridge="none").uplink_bridge == ""
    assert AgentConfig(uplinkBridge="br-up").uplink_bridge == "br-up"
