"""install_plugin and write_conflist: what the agent writes on every start."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from antrea.agent.cniserver import install


def _fake_plugin(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_install_plugin_copies_the_static_executable(tmp_path):
    """What lands in the CNI bin dir is the C shim: a static ELF, no interpreter line."""
    exe = install.install_plugin(tmp_path / "bin")
    assert exe == tmp_path / "bin" / "antrea"
    assert exe.stat().st_mode & stat.S_IXUSR
    head = exe.read_bytes()[:20]
    assert head.startswith(b"\x7fELF")
    proc = subprocess.run(["file", "-b", str(exe)], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        assert "statically linked" in proc.stdout or "static-pie" in proc.stdout, proc.stdout


def test_installed_plugin_runs_with_an_empty_environment(tmp_path):
    """A runtime passes only CNI_* variables: no PATH, no PYTHONPATH, no virtualenv."""
    exe = install.install_plugin(tmp_path, name="antrea-test")
    proc = subprocess.run(
        [exe], env={"CNI_COMMAND": "VERSION"}, input=b"{}", capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"


def test_installed_plugin_runs_in_an_empty_root(tmp_path):
    """Nothing on the host is needed: it runs chrooted into a directory holding only itself."""
    root = tmp_path / "root"
    install.install_plugin(root / "opt" / "cni" / "bin")
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")

    def enter() -> None:
        os.chroot(root)
        os.chdir("/")

    proc = subprocess.run(
        ["/opt/cni/bin/antrea"],
        preexec_fn=enter,
        env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "e"},
        input=b'{"cniVersion": "1.0.0", "name": "n", "type": "antrea"}',
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == 11 and "/var/run/antrea/cni.sock" in doc["msg"]


def test_install_bakes_the_agent_socket_in_as_default(tmp_path):
    sock = "/run/antrea-test/agent.sock"
    exe = install.install_plugin(tmp_path / "bin", socket=sock)
    proc = subprocess.run(
        [exe], env={"CNI_COMMAND": "STATUS"}, input=b"{}", capture_output=True, check=False
    )
    doc = json.loads(proc.stdout)
    assert doc["code"] == 50 and sock in doc["msg"]


def test_install_refuses_a_socket_the_slot_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        install.install_plugin(tmp_path, socket="/" + "x" * 120)


def test_install_is_idempotent_and_leaves_no_temporaries(tmp_path):
    install.install_plugin(tmp_path)
    install.install_plugin(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["antrea"]


def test_python_plugin_is_an_isolated_launcher(tmp_path):
    exe = install.install_python_plugin(tmp_path / "bin")
    first = exe.read_text().splitlines()[0]
    assert first.startswith("#!/") and first.endswith(" -IS")


def test_isolated_launcher_ignores_pythonpath(tmp_path):
    """-I: a PYTHONPATH with a shadowing 'antrea' package must not be picked up."""
    shadow = tmp_path / "shadow" / "antrea"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit(42)\n")
    exe = install.install_python_plugin(tmp_path / "bin")
    env = {"CNI_COMMAND": "VERSION", "PYTHONPATH": str(shadow.parent)}
    proc = subprocess.run([exe], env=env, input=b"{}", capture_output=True, check=False)
    assert proc.returncode == 0


def test_conflist_without_bin_dir_has_only_antrea(tmp_path):
    path = install.write_conflist(tmp_path / "net.d", mtu=1450, socket="/run/antrea/cni.sock")
    assert path.name == "10-antrea.conflist"
    doc = json.loads(path.read_text())
    assert doc["name"] == "antrea"
    assert doc["cniVersion"] == "1.0.0"
    assert doc["cniVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    assert doc["plugins"] == [
        {
            "type": "antrea",
            "ipam": {"type": "host-local"},
            "mtu": 1450,
            "cniSocket": "/run/antrea/cni.sock",
        }
    ]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_conflist_mtu_zero_lets_the_agent_decide(tmp_path):
    doc = json.loads(install.write_conflist(tmp_path, mtu=0, socket="/s").read_text())
    assert "mtu" not in doc["plugins"][0]


def test_conflist_chains_present_plugins_and_agrees_on_versions(tmp_path):
    """portmap/bandwidth are chained only when present; versions are the common subset."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    versions = '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}'
    _fake_plugin(bin_dir, "portmap", f"echo '{versions}'")
    doc = json.loads(
        install.write_conflist(tmp_path / "d", mtu=0, socket="/s", bin_dir=bin_dir).read_text()
    )
    assert [p["type"] for p in doc["plugins"]] == ["antrea", "portmap"]
    assert doc["plugins"][1]["capabilities"] == {"portMappings": True}
    assert doc["cniVersion"] == "1.0.0"
    assert doc["cniVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]


def test_conflist_skips_a_plugin_that_does_not_answer_version(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_plugin(bin_dir, "portmap", "exit 1")
    _fake_plugin(bin_dir, "bandwidth", "echo not-json")
    doc = json.loads(
        install.write_conflist(tmp_path, mtu=0, socket="/s", bin_dir=bin_dir).read_text()
    )
    assert [p["type"] for p in doc["plugins"]] == ["antrea"]


def test_conflist_forced_version(tmp_path):
    doc = install.build_conflist(mtu=0, socket="/s", cni_version="0.3.0")
    assert doc["cniVersion"] == "0.3.0"


@pytest.mark.skipif(not os.access("/usr/lib/cni/portmap", os.X_OK), reason="no reference plugins")
def test_conflist_with_the_reference_plugins(tmp_path):
    """Debian's plugins (CNI 1.1.1) stop at 1.0.0, so the chain cannot offer 1.1.0."""
    path = install.write_conflist(tmp_path, mtu=0, socket="/s", bin_dir=Path("/usr/lib/cni"))
    doc = json.loads(path.read_text())
    assert [p["type"] for p in doc["plugins"]] == ["antrea", "portmap", "bandwidth"]
    assert "1.1.0" not in doc["cniVersions"]


def test_plugin_accepts_its_own_conflist(tmp_path, run_plugin, agent):
    """Derive the plugin's stdin from the conflist as libcni does, and ADD through it."""
    doc = json.loads(install.write_conflist(tmp_path, mtu=1400, socket=agent.path).read_text())
    for version in doc["cniVersions"]:
        conf = {**doc["plugins"][0], "name": doc["name"], "cniVersion": version}
        run = run_plugin(conf)
        assert run.rc == 0, run.stdout
        assert run.json["cniVersion"] == version
    assert agent.requests[0]["config"]["mtu"] == 1400
