"""OCI archives written by antrea.util.oci: layout, digests, docker view, reproducibility."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.util import oci


def tree(root: Path) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "usr" / "bin" / "tool").chmod(0o755)
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool2")
    (root / "bin").symlink_to("usr/bin")
    (root / "dev").mkdir()
    (root / "dev" / "null-ish").write_text("never shipped")
    (root / "opt" / "app").mkdir(parents=True)
    (root / "opt" / "app" / "x").write_text("x")
    return root


def build(tmp: Path, ref: str = "antrea/antrea:1.2.3") -> Path:
    root = tree(tmp / "root")
    oci.tar_tree(root, tmp / "base.tar")
    oci.tar_tree(root, tmp / "app.tar", ["opt/app"])
    layers = [oci.make_layer(tmp / "base.tar"), oci.make_layer(tmp / "app.tar")]
    cfg = oci.ImageConfig(entrypoint=["/usr/bin/tool"], env=["PATH=/usr/bin"])
    oci.write_archive(tmp / "image.tar", layers, cfg, ref)
    return tmp / "image.tar"


def test_archive_verifies_and_names_the_image_for_every_loader(tmp_path: Path) -> None:
    archive = build(tmp_path)
    got = oci.verify_archive(archive)
    assert got.ref == "antrea/antrea:1.2.3"
    assert got.config["config"]["Entrypoint"] == ["/usr/bin/tool"]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    ann = index["manifests"][0]["annotations"]
    assert ann == {
        "io.containerd.image.name": "docker.io/antrea/antrea:1.2.3",
        "org.opencontainers.image.ref.name": "1.2.3",
    }


def test_layers_keep_links_and_leave_runtime_dirs_empty(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    oci.tar_tree(root, tmp_path / "l.tar")
    with tarfile.open(tmp_path / "l.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "dev" in members and "dev/null-ish" not in members
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/tool2"].islnk() or members["usr/bin/tool"].islnk()
    assert list(members).index("usr") < list(members).index("usr/bin/tool")
    oci.tar_tree(root, tmp_path / "app.tar", ["opt/app"])
    with tarfile.open(tmp_path / "app.tar") as tar:
        assert tar.getnames() == ["opt", "opt/app", "opt/app/x"]


def test_same_tree_same_digests(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    digests = []
    for d in (a, b):
        oci.tar_tree(tree(tmp_path / "root") if d is a else tmp_path / "root", d / "l.tar")
        digests.append(oci.make_layer(d / "l.tar").digest)
    assert digests[0] == digests[1]


def test_a_corrupt_blob_is_detected(tmp_path: Path) -> None:
    archive = build(tmp_path)
    with tarfile.open(archive) as src, tarfile.open(tmp_path / "bad.tar", "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if data is not None and m.name.startswith("blobs/") and data[:2] == b"\x1f\x8b":
                raw = bytearray(gzip.decompress(data))
                raw[-1] ^= 1
                data = gzip.compress(bytes(raw), mtime=0)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    with pytest.raises(oci.ArchiveError):
        oci.verify_archive(tmp_path / "bad.tar")


@given(
    repo=st.from_regex(r"[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    tag=st.from_regex(r"[a-z0-9][a-z0-9.]{0,8}", fullmatch=True),
)
def test_normalized_refs_are_fully_qualified(repo: str, tag: str) -> None:
    ref = oci.normalize_ref(f"{repo}:{tag}")
    name, _, got_tag = ref.rpartition(":")
    assert got_tag == tag
    assert name.endswith(repo) and name.split("/")[0] in (
        "docker.io",
        repo.split("/", maxsplit=1)[0],
    )
    assert oci.normalize_ref(ref) == ref  # idempotent
