"""Local OCI images for the real lab, written directly as OCI archives (no registry, no builder).

An OCI archive is a tar holding ``oci-layout``, ``index.json`` and content-addressed blobs (one
uncompressed layer tar, the image config, the manifest); ``ctr images import`` takes it. The
image name is in the index annotations (``io.containerd.image.name`` for containerd,
``org.opencontainers.image.ref.name`` for other tools).

- the pause image (every pod's sandbox): a static ``/pause``;
- the workload image, named as the upstream image the lab's pod model uses
  (``registry.k8s.io/e2e-test-images/agnhost:2.43``), so the same pod objects run on both lab
  modes: a static ``/agnhost`` plus busybox (``/bin/sh`` and friends, for `kubectl exec`).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from antrea.testbed.lab.model import IMAGE as WORKLOAD_IMAGE
from antrea.testbed.lab.realk8s import programs
from antrea.testbed.lab.realk8s.binaries import BUSYBOX

PAUSE_IMAGE = "antrea.io/lab/pause:1"
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "ip", "ping", "nc", "wget", "hostname", "sleep",
                   "ps", "env", "true", "false", "id", "mount", "ifconfig", "arping")  # fmt: skip

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # inside the image, no leading slash
    data: bytes | None = None  # None: a directory
    mode: int = 0o755
    link: str | None = None  # a symlink to this target


def _layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mode, info.mtime = e.mode, 0
            if e.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, e.link
                tar.addfile(info)
            elif e.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def write_archive(
    out: Path, name: str, entries: list[Entry], *, entrypoint: list[str], cmd: list[str]
) -> Path:
    """Write a single-layer linux/amd64 OCI archive for image ``name`` to ``out``."""
    layer = _layer(entries)
    diff_id = f"sha256:{hashlib.sha256(layer).hexdigest()}"
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": entrypoint,
                "Cmd": cmd,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    with tarfile.open(out, mode="w") as tar:
        layer_digest = _blob(tar, layer)
        config_digest = _blob(tar, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": len(layer)}],
            },
            sort_keys=True,
        ).encode()
        manifest_digest = _blob(tar, manifest)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name,
                    },
                }
            ],
        }
        for fname, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}), ("index.json", index)):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(fname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out


def _base_dirs() -> list[Entry]:
    return [Entry(d) for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "var", "var/run")]


def build_pause(workdir: Path) -> Path:
    binary = programs.compile_static(programs.PAUSE_C, workdir / "pause")
    entries = [*_base_dirs(), Entry("pause", binary.read_bytes())]
    return write_archive(workdir / "pause.oci.tar", PAUSE_IMAGE, entries,
                         entrypoint=["/pause"], cmd=[])  # fmt: skip


def build_workload(workdir: Path) -> Path:
    binary = programs.compile_static(programs.AGNHOST_C, workdir / "agnhost")
    entries = [
        *_base_dirs(),
        Entry("agnhost", binary.read_bytes()),
        Entry("bin/busybox", BUSYBOX.read_bytes()),
        *(Entry(f"bin/{a}", link="busybox") for a in BUSYBOX_APPLETS),
        Entry("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644),
        Entry("etc/group", b"root:x:0:\n", 0o644),
    ]
    return write_archive(workdir / "workload.oci.tar", WORKLOAD_IMAGE, entries,
                         entrypoint=["/agnhost"], cmd=["serve-hostname"])  # fmt: skip
