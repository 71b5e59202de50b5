"""OCI image archives written directly: layer tars, config, manifest, index, no registry, no daemon.

`bin/build-image` uses this to turn a root file system (a debootstrap root plus the project's
venv) into one archive that ``ctr images import``, ``podman load`` and ``docker load`` accept:

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      one manifest, named (io.containerd.image.name / ref.name)
    manifest.json                   docker-archive view of the same blobs (RepoTags)
    blobs/sha256/<digest>           the manifest, the config and the gzip layers

Everything is content-addressed (sha256 of the bytes stored): tar entries are sorted, owners
numeric, gzip headers carry no name or time, so the same tree gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antrea.errors import AntreaError

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
# Left empty in a layer (the runtime mounts them): device nodes from debootstrap never ship.
RUNTIME_DIRS = ("dev", "proc", "sys")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # File times are kept (Python checks .pyc files against their sources' mtimes).
    info.uname = info.gname = ""
    return info


def tar_tree(root: str | Path, out: str | Path, paths: Iterable[str] | None = None) -> None:
    """A reproducible, uncompressed layer tar of ``root`` (or only of ``paths`` below it).

    Entries are relative (``usr/bin/x``), sorted, with parents before children; hard links stay
    hard links; the contents of /dev, /proc and /sys are left out (the directories stay).
    """
    root = Path(root)
    tops = sorted(paths) if paths is not None else None
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk(root, tops):
            tar.add(root / rel, arcname=rel, recursive=False, filter=_normalize)


def _walk(root: Path, tops: list[str] | None) -> Iterable[str]:
    def below(rel: str) -> Iterable[str]:
        full = root / rel if rel else root
        if rel:
            yield rel
        if full.is_symlink() or not full.is_dir():
            return
        if rel in RUNTIME_DIRS:
            return
        for name in sorted(os.listdir(full)):
            yield from below(f"{rel}/{name}" if rel else name)

    if tops is None:
        yield from below("")
        return
    seen: set[str] = set()
    for given in tops:
        top = given.strip("/")
        parts = top.split("/")
        for i in range(1, len(parts)):  # parent directories first, once
            parent = "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                yield parent
        for rel in below(top):
            if rel not in seen:
                seen.add(rel)
                yield rel


def gzip_layer(tar_path: Path, out: Path) -> None:
    """Compress a layer tar reproducibly (no file name or time in the gzip header)."""
    # A unique temporary name: concurrent builds may compress the same cached base layer.
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    with (
        tar_path.open("rb") as src,
        tmp.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
    ):
        shutil.copyfileobj(src, gz, _CHUNK)
    tmp.replace(out)


@dataclass(frozen=True)
class Layer:
    """One layer: the uncompressed tar (its digest is the diff_id) and its gzip blob."""

    tar: Path
    blob: Path
    diff_id: str
    digest: str
    size: int
    comment: str = ""


def make_layer(tar_path: str | Path, comment: str = "", *, reuse: bool = False) -> Layer:
    """Compress ``tar_path`` next to itself (``.gz``); with ``reuse`` an existing .gz is kept."""
    tar_path = Path(tar_path)
    blob = tar_path.with_name(tar_path.name + ".gz")
    if not (reuse and blob.exists() and blob.stat().st_mtime >= tar_path.stat().st_mtime):
        gzip_layer(tar_path, blob)
    return Layer(
        tar=tar_path,
        blob=blob,
        diff_id=sha256_file(tar_path),
        digest=sha256_file(blob),
        size=blob.stat().st_size,
        comment=comment,
    )


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ()
    working_dir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"


def config_json(cfg: ImageConfig, layers: Sequence[Layer]) -> dict[str, Any]:
    return {
        "created": "1970-01-01T00:00:00Z",  # fixed: the same tree gives the same image digest
        "architecture": cfg.architecture,
        "os": cfg.os,
        "config": {
            "Entrypoint": list(cfg.entrypoint) or None,
            "Cmd": list(cfg.cmd) or None,
            "Env": list(cfg.env),
            "WorkingDir": cfg.working_dir,
            "Labels": dict(cfg.labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
        "history": [{"created_by": la.comment or "antrea bin/build-image"} for la in layers],
    }


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def normalize_ref(ref: str) -> str:
    """``antrea/antrea:1.0`` -> ``docker.io/antrea/antrea:1.0`` (how kubelet/containerd name it)."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        name, tag = ref, "latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def write_archive(out: str | Path, layers: Sequence[Layer], cfg: ImageConfig, ref: str) -> str:
    """Write the OCI archive for ``ref`` (``repo:tag``); returns the manifest digest."""
    config = _canonical(config_json(cfg, layers))
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [
                {"mediaType": MEDIA_LAYER_GZIP, "digest": la.digest, "size": la.size}
                for la in layers
            ],
        }
    )
    tag = ref.rpartition(":")[2]
    index = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": cfg.architecture, "os": cfg.os},
                    "annotations": {CONTAINERD_NAME: normalize_ref(ref), REF_NAME: tag},
                }
            ],
        }
    )
    docker_manifest = _canonical(
        [
            {
                "Config": f"blobs/sha256/{_digest(config)[7:]}",
                "RepoTags": [ref],
                "Layers": [f"blobs/sha256/{la.digest[7:]}" for la in layers],
            }
        ]
    )
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for data in (config, manifest):
            _add_bytes(tar, f"blobs/sha256/{_digest(data)[7:]}", data)
        written: set[str] = set()
        for la in layers:
            if la.digest in written:
                continue
            written.add(la.digest)
            info = tarfile.TarInfo(f"blobs/sha256/{la.digest[7:]}")
            info.size = la.size
            info.mode = 0o644
            with la.blob.open("rb") as f:
                tar.addfile(info, f)
        _add_bytes(tar, "oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
        _add_bytes(tar, "index.json", index)
        _add_bytes(tar, "manifest.json", docker_manifest)
    tmp.replace(out)
    return _digest(manifest)


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class Verified:
    ref: str
    manifest_digest: str
    config: dict[str, Any]
    layer_digests: list[str]


class ArchiveError(AntreaError, ValueError):
    """The archive is not a valid OCI image layout (or a blob does not match its digest)."""


def verify_archive(path: str | Path) -> Verified:
    """Check an archive the way an importer would: layout, index, every digest and size."""
    with tarfile.open(path) as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            m = members.get(name)
            if m is None:
                raise ArchiveError(f"missing {name}")
            f = tar.extractfile(m)
            assert f is not None
            return f.read()

        def blob(desc: dict[str, Any]) -> bytes:
            digest = str(desc["digest"])
            data = read(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            if _digest(data) != digest:
                raise ArchiveError(f"blob {digest} does not match its digest")
            if len(data) != desc["size"]:
                raise ArchiveError(f"blob {digest}: size {len(data)} != {desc['size']}")
            return data

        if json.loads(read("oci-layout")).get("imageLayoutVersion") != "1.0.0":
            raise ArchiveError("oci-layout: unknown imageLayoutVersion")
        index = json.loads(read("index.json"))
        if index.get("schemaVersion") != 2 or len(index.get("manifests") or []) != 1:
            raise ArchiveError("index.json: expected schemaVersion 2 and one manifest")
        desc = index["manifests"][0]
        manifest = json.loads(blob(desc))
        if manifest.get("mediaType") != MEDIA_MANIFEST:
            raise ArchiveError("manifest: unexpected mediaType")
        config = json.loads(blob(manifest["config"]))
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest["layers"]):
            raise ArchiveError("config: diff_ids do not match the layers")
        for la, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            data = blob(la)
            if _digest(gzip.decompress(data)) != diff_id:
                raise ArchiveError(f"layer {la['digest']}: diff_id mismatch")
        docker = json.loads(read("manifest.json"))
        want = [f"blobs/sha256/{la['digest'][7:]}" for la in manifest["layers"]]
        if docker[0]["Layers"] != want or docker[0]["Config"] != (
            f"blobs/sha256/{manifest['config']['digest'][7:]}"
        ):
            raise ArchiveError("manifest.json does not describe the same image")
        return Verified(
            ref=str(docker[0]["RepoTags"][0]),
            manifest_digest=str(desc["digest"]),
            config=config,
            layer_digests=[str(la["digest"]) for la in manifest["layers"]],
        )
