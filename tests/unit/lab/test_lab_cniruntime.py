"""The lab's container-runtime side of CNI, with fake plugins that record what they got."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antrea.testbed.lab.cniruntime import (
    Attachment,
    CniError,
    CniRuntime,
    NoNetworkConfig,
    first_ipv4,
    load_network,
)

PLUGIN = """#!/bin/sh
# Record env and stdin, print a result (ADD) naming this plugin.
log="{log}"
input=$(cat)
me=$(basename "$0")
printf '%s|%s|%s|%s|%s\\n' "$CNI_COMMAND" "$me" "$CNI_ARGS" "$CNI_IFNAME" "$input" >> "$log"
if [ "$(basename "$0")" = "failing" ]; then
  echo '{{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"on purpose"}}'; exit 1
fi
if [ "$CNI_COMMAND" = "ADD" ]; then
  echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.9.0.5/24"}}],"plugin":"'$(basename "$0")'"}}'
fi
"""


@pytest.fixture
def env(tmp_path: Path) -> tuple[CniRuntime, Path]:
    bins = tmp_path / "bin"
    bins.mkdir()
    log = tmp_path / "calls.log"
    for name in ("first", "second", "failing"):
        p = bins / name
        p.write_text(PLUGIN.format(log=log))
        p.chmod(0o755)
    conf = tmp_path / "net.d"
    conf.mkdir()
    rt = CniRuntime(node_netns=None, conf_dir=conf, bin_dirs=[bins], cache_dir=tmp_path / "cache")
    return rt, log


def att() -> Attachment:
    return Attachment("c0ffee", "/var/run/netns/x", "eth0", [("K8S_POD_NAME", "a")])


def calls(log: Path) -> list[tuple[str, str, dict[str, object]]]:
    out = []
    for line in log.read_text().splitlines():
        cmd, plugin, _args, _ifname, stdin = line.split("|", 4)
        out.append((cmd, plugin, json.loads(stdin)))
    return out


def write(rt: CniRuntime, name: str, plugins: list[str], version: str = "1.0.0") -> None:
    doc = {"cniVersion": version, "name": "net", "plugins": [{"type": p} for p in plugins]}
    (rt.conf_dir / name).write_text(json.dumps(doc))


async def test_add_chains_prev_result_and_del_runs_in_reverse_with_cache(
    env: tuple[CniRuntime, Path],
) -> None:
    """ADD feeds each plugin the previous result; DEL uses the cached config, in reverse."""
    rt, log = env
    write(rt, "10-net.conflist", ["first", "second"])
    result = await rt.add(att())
    assert result["plugin"] == "second"
    assert first_ipv4(result) == "10.9.0.5"
    # The conf dir changes: DEL still uses what the pod was set up with.
    write(rt, "10-net.conflist", ["failing"])
    await rt.delete(att())
    seen = calls(log)
    assert [(c, p) for c, p, _ in seen] == [
        ("ADD", "first"), ("ADD", "second"), ("DEL", "second"), ("DEL", "first"),
    ]  # fmt: skip
    assert "prevResult" not in seen[0][2]
    assert seen[1][2]["prevResult"]["plugin"] == "first"  # type: ignore[index]
    assert seen[2][2]["prevResult"]["plugin"] == "second"  # type: ignore[index]
    assert seen[0][2]["name"] == "net" and seen[0][2]["cniVersion"] == "1.0.0"
    assert rt.find_cached(att()) is None


async def test_plugin_error_is_reported_and_partial_add_rolled_back(
    env: tuple[CniRuntime, Path],
) -> None:
    """A failing plugin's CNI error surfaces with its code; earlier plugins get DEL."""
    rt, log = env
    write(rt, "10-net.conflist", ["first", "failing"])
    with pytest.raises(CniError) as info:
        await rt.add(att())
    assert info.value.code == 7 and info.value.msg == "bad config"
    assert [(c, p) for c, p, _ in calls(log)] == [
        ("ADD", "first"),
        ("ADD", "failing"),
        ("DEL", "first"),
    ]
    assert rt.find_cached(att()) is None


async def test_first_config_in_lexicographic_order_and_single_conf(
    env: tuple[CniRuntime, Path],
) -> None:
    """Like libcni: the first parsable file wins; a .conf is a one-plugin list."""
    rt, _ = env
    with pytest.raises(NoNetworkConfig):
        load_network(rt.conf_dir)
    (rt.conf_dir / "05-broken.conflist").write_text("{not json")
    (rt.conf_dir / "20-single.conf").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "one", "type": "first"})
    )
    write(rt, "30-net.conflist", ["second"])
    net = load_network(rt.conf_dir)
    assert net.name == "one" and [p["type"] for p in net.plugins] == ["first"]
    assert net.cni_version == "0.4.0"


async def test_check_uses_cached_result(env: tuple[CniRuntime, Path]) -> None:
    """CHECK runs every plugin with the cached ADD result; without a cache it fails."""
    rt, log = env
    with pytest.raises(CniError):
        await rt.check(att())
    write(rt, "10-net.conflist", ["first"])
    await rt.add(att())
    await rt.check(att())
    cmd, _, conf = calls(log)[-1]
    assert cmd == "CHECK" and conf["prevResult"]["plugin"] == "first"  # type: ignore[index]
