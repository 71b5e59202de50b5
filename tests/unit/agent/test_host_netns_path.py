"""The runtime's netns path, seen from the agent container (host's /var/run/netns at /host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from antrea.agent.cniserver import podconfig


def test_paths_are_mapped_under_the_host_mount_only_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = tmp_path / "host"
    (host / "var/run/netns").mkdir(parents=True)
    (host / "var/run/netns/cni-1").touch()
    monkeypatch.setattr(podconfig, "HOST_ROOT", str(host))
    # In the container: only the /host view exists.
    assert podconfig.host_netns_path("/var/run/netns/cni-1") == f"{host}/var/run/netns/cni-1"
    # As a host process (the lab): the path exists as given and is kept.
    own = tmp_path / "ns"
    own.touch()
    assert podconfig.host_netns_path(str(own)) == str(own)
    # Gone everywhere (DEL after the sandbox went) or empty: kept as the runtime gave it.
    assert podconfig.host_netns_path("/var/run/netns/cni-2") == "/var/run/netns/cni-2"
    assert podconfig.host_netns_path("") == ""
