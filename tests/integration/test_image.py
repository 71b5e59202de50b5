"""bin/build-image: the archive is a valid OCI image that a private containerd imports and runs.

Builds the real image (debootstrap root cached in $ANTREA_IMAGE_CACHE, so only the first build
on a machine downloads Debian packages), checks the layout and every digest, what the layers
hold (OVS, iptables, iproute2, the venv, a static CNI executable), the config's entrypoint, then
`ctr images import` into a containerd started for the test (own root, state and socket) and runs
the image once: `antrea --help`, `antrea install-cni` and the CNI executable's VERSION answer;
skopeo (podman's image library) loads it as an OCI archive and as a docker archive by its tag.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import tarfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.util import oci

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
REF = f"antrea/antrea:{VERSION}"
PT_INTERP = 3

pytestmark = [pytest.mark.root]


def _need(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (bash bin/setup installs them)")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("debootstrap", "musl-gcc")
    out = tmp_path_factory.mktemp("image") / "antrea.oci.tar"
    proc = subprocess.run(
        ["nice", "bash", str(REPO / "bin" / "build-image"), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[:2] == [str(out), REF]
    return out


def layer_members(path: Path, digest: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as outer:
        blob = outer.extractfile(f"blobs/sha256/{digest[7:]}")
        assert blob is not None
        with tarfile.open(fileobj=blob, mode="r:gz") as layer:
            return {m.name: m for m in layer.getmembers()}


def read_from_layer(path: Path, digest: str, name: str) -> bytes:
    with tarfile.open(path) as outer:
        blob = outer.extractfile(f"blobs/sha256/{digest[7:]}")
        assert blob is not None
        with tarfile.open(fileobj=blob, mode="r:gz") as layer:
            f = layer.extractfile(name)
            assert f is not None
            return f.read()


def is_static_elf(data: bytes) -> bool:
    """An ELF64 executable without a PT_INTERP program header (no dynamic loader needed)."""
    assert data[:4] == b"\x7fELF" and data[4] == 2
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return PT_INTERP not in types


def test_archive_is_a_valid_oci_image_with_the_versioned_name(archive: Path) -> None:
    got = oci.verify_archive(archive)  # layout, index, every digest and size, diff_ids
    assert got.ref == REF
    cfg = got.config["config"]
    assert cfg["Entrypoint"] == ["/opt/antrea/bin/antrea"]
    assert any(e.startswith("PATH=/opt/antrea/bin:") for e in cfg["Env"])
    assert cfg["Labels"]["org.opencontainers.image.version"] == VERSION
    with tarfile.open(archive) as tar:
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert docker[0]["RepoTags"] == [REF]


def test_layers_hold_the_datapath_tools_the_venv_and_a_static_cni_executable(
    archive: Path,
) -> None:
    base, project = oci.verify_archive(archive).layer_digests
    names = set(layer_members(archive, base))
    for tool in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "iptables-restore", "ip", "python3"):
        assert any(n.endswith(f"bin/{tool}") for n in names), tool
    assert not any(n.startswith("dev/") for n in names)
    members = layer_members(archive, project)
    assert "opt/antrea/bin/antrea" in members
    assert "usr/local/bin/start_ovs" in members
    shim = members["opt/antrea/lib/antrea/antrea-cni"]
    assert shim.mode & 0o111
    assert is_static_elf(read_from_layer(archive, project, shim.name))
    # The venv's package is exactly the checkout's modules: nothing a stale build/lib still held
    # (modules since moved or deleted) rides along.
    installed = {
        n.split("/site-packages/", 1)[1]
        for n in members
        if "/site-packages/antrea/" in n and n.endswith(".py")
    }
    checkout = {str(p.relative_to(REPO / "src")) for p in (REPO / "src" / "antrea").rglob("*.py")}
    assert installed == checkout, (sorted(installed - checkout), sorted(checkout - installed))


def test_podman_and_docker_formats_load_with_every_layer(archive: Path, tmp_path: Path) -> None:
    """skopeo reads the archive through the same library as `podman load`: as an OCI archive
    and as a docker archive by its tag (what `docker load` reads), copying every blob."""
    _need("skopeo")
    for n, source in enumerate((f"oci-archive:{archive}", f"docker-archive:{archive}:{REF}")):
        dest = tmp_path / f"copy{n}"
        proc = subprocess.run(
            ["skopeo", "copy", "-q", source, f"dir:{dest}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == 0, (source, proc.stderr[-2000:])
        manifest = json.loads((dest / "manifest.json").read_text())
        assert len(manifest["layers"]) == 2, source


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    _need("containerd", "ctr", "runc")
    d = Path(f"/tmp/antrea-ctrd-{uuid.uuid4().hex[:8]}")  # short: unix socket path limit
    d.mkdir()
    sock = d / "c.sock"
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
    )
    log = (tmp_path / "containerd.log").open("wb")
    proc = subprocess.Popen(
        ["containerd", "--config", str(d / "config.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, (tmp_path / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.1)
        yield sock
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(d)):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_containerd_imports_and_runs_the_image(archive: Path, containerd: Path) -> None:
    def ctr(*args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            ["ctr", "-a", str(containerd), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        return proc.stdout

    ctr("images", "import", "--snapshotter", "native", str(archive))
    name = f"docker.io/{REF}"  # how kubelet names antrea/antrea:<version>
    assert name in ctr("images", "ls", "-q").split()
    assert "complete" in ctr("images", "check", f"name=={name}")
    script = (
        "antrea --help >/dev/null && "
        "antrea install-cni --bin-dir /tmp/bin --conf-dir /tmp/conf >/dev/null && "
        "CNI_COMMAND=VERSION /tmp/bin/antrea </dev/null"
    )
    out = ctr(
        "run", "--rm", "--snapshotter", "native", "--net-host", name,
        f"antrea-image-test-{uuid.uuid4().hex[:6]}", "sh", "-c", script,
    )  # fmt: skip
    assert "1.0.0" in json.loads(out)["supportedVersions"]
