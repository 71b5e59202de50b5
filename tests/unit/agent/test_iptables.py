"""SNAT rules: pod CIDRs excluded, everything else leaving outside gw0 masqueraded."""

from __future__ import annotations

import ipaddress

from antrea.agent.iptables import masquerade_rules


def test_rules_exclude_every_pod_cidr_then_masquerade() -> None:
    doc = masquerade_rules(
        pod_cidr=ipaddress.IPv4Network("10.244.1.0/24"),
        gateway="gw0",
        pod_cidrs=[ipaddress.IPv4Network("10.244.2.0/24")],
    )
    lines = doc.splitlines()
    assert lines[:2] == ["*nat", ":ANTREA-POSTROUTING - [0:0]"]
    returns = [line for line in lines if "-j RETURN" in line]
    assert [r.split()[5] for r in returns] == ["10.244.1.0/24", "10.244.2.0/24"]
    assert lines[-2].endswith("-j MASQUERADE") and "! -o gw0" in lines[-2]
    assert lines[-1] == "COMMIT" and doc.endswith("\n")
