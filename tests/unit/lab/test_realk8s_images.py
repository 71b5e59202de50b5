"""The real lab's local images: OCI archive layout, and the static programs they run."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from antrea.testbed.lab.model import IMAGE
from antrea.testbed.lab.realk8s import images, programs
from antrea.testbed.lab.realk8s.binaries import BUSYBOX


def _need_toolchain() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc + libc6-dev (bash bin/setup installs them)")


def _blobs(tar: tarfile.TarFile) -> dict[str, bytes]:
    out = {}
    for m in tar.getmembers():
        if m.name.startswith("blobs/sha256/"):
            f = tar.extractfile(m)
            assert f is not None
            out["sha256:" + m.name.rsplit("/", 1)[1]] = f.read()
    return out


def test_archive_is_a_content_addressed_oci_layout(tmp_path: Path) -> None:
    out = images.write_archive(
        tmp_path / "x.tar",
        "example.org/x:1",
        [
            images.Entry("bin"),
            images.Entry("bin/hello", b"hi\n"),
            images.Entry("bin/sh", link="hello"),
        ],
        entrypoint=["/bin/hello"],
        cmd=["a"],
    )
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        blobs = _blobs(tar)
    for digest, data in blobs.items():
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    (desc,) = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "example.org/x:1"
    manifest = json.loads(blobs[desc["digest"]])
    assert desc["size"] == len(blobs[desc["digest"]])
    config = json.loads(blobs[manifest["config"]["digest"]])
    assert config["config"]["Entrypoint"] == ["/bin/hello"]
    (layer_desc,) = manifest["layers"]
    layer = blobs[layer_desc["digest"]]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        hello = lt.getmember("bin/hello")
        assert lt.extractfile(hello).read() == b"hi\n"  # type: ignore[union-attr]
        assert lt.getmember("bin/sh").issym()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(binary: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(binary), "serve-hostname", *args])


def test_workload_program_serves_what_the_lab_probe_checks(tmp_path: Path) -> None:
    _need_toolchain()
    binary = programs.compile_static(programs.AGNHOST_C, tmp_path / "agnhost")
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    procs = [_serve(binary, "--tcp", "--http=false", f"--port={tcp}"),
             _serve(binary, "--udp", "--http=false", f"--port={udp}")]  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        banner = b""
        while True:
            try:
                with socket.create_connection(("127.0.0.1", tcp), timeout=1) as c:
                    banner = c.recv(512)
                break
            except OSError:
                assert time.monotonic() < deadline, "agnhost --tcp never listened"
                time.sleep(0.05)
        assert banner == (socket.gethostname() + "\n").encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(1)
            u.connect(("127.0.0.1", udp))
            for _ in range(20):
                u.send(b"probe x/a")
                try:
                    assert u.recv(512) == b"probe x/a"  # an echo, as `antrea lab probe` wants
                    break
                except TimeoutError:
                    continue
                except ConnectionRefusedError:  # not bound yet (a loaded machine)
                    time.sleep(0.05)
            else:
                pytest.fail("agnhost --udp never echoed")
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_pause_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    _need_toolchain()
    binary = programs.compile_static(programs.PAUSE_C, tmp_path / "pause")
    proc = subprocess.Popen([str(binary)])
    try:
        time.sleep(0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()


def test_workload_image_carries_the_program_and_a_shell(tmp_path: Path) -> None:
    _need_toolchain()
    if not BUSYBOX.exists():
        pytest.skip("needs busybox-static (bash bin/setup installs it)")
    out = images.build_workload(tmp_path)
    with tarfile.open(out) as tar:
        blobs = _blobs(tar)
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    desc = index["manifests"][0]
    assert desc["annotations"]["io.containerd.image.name"] == IMAGE
    manifest = json.loads(blobs[desc["digest"]])
    layer = blobs[manifest["layers"][0]["digest"]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        names = set(lt.getnames())
    assert {"agnhost", "bin/busybox", "bin/sh"} <= names
