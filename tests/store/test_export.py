"""Export: a layout reader composed with an archive writer (the OCI archive of `save`)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import BinaryIO

import pytest

from builder.errors import ImageNotFound, StoreError
from builder.image.digest import Digest
from builder.store import Store
from builder.store.archive import save_oci_archive
from builder.store.export import LayoutReader, export
from tests.store.support import corrupt, make_image


def test_oci_archive(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    one = make_image(store, tmp_path, "one", "one:v1")
    two = make_image(store, tmp_path, "two", "registry.example/team/two:v2")
    out = tmp_path / "out.tar"
    save_oci_archive(store, ["one:v1", "registry.example/team/two:v2", "one:v1"], out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names[:4] == ["oci-layout", "index.json", "blobs", "blobs/sha256"]
        blobs = {f"blobs/sha256/{b.digest.hex}" for image in (one, two) for b in image.blobs()}
        assert sorted(names[4:]) == sorted(blobs)  # each blob once
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        for name in blobs:
            data = tar.extractfile(name).read()  # type: ignore[union-attr]
            assert Digest.of_bytes(data).hex == name.rpartition("/")[2]
    refs = [
        (m["digest"], m["annotations"]["io.containerd.image.name"],
         m["annotations"]["org.opencontainers.image.ref.name"])
        for m in index["manifests"]
    ]  # fmt: skip
    assert refs == [
        (one.digest, "docker.io/library/one:v1", "v1"),  # as docker and buildx write it
        (two.digest, "registry.example/team/two:v2", "v2"),
        (one.digest, "docker.io/library/one:v1", "v1"),
    ]
    assert list(tmp_path.glob(".out.tar*")) == []


def test_unknown_name_writes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    out = tmp_path / "out.tar"
    with pytest.raises(ImageNotFound):
        save_oci_archive(store, ["nope"], out)
    assert list(tmp_path.iterdir()) == [store.root]


def test_corrupt_blob_fails_the_export_and_leaves_no_file(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    image = make_image(store, tmp_path, "one", "one")
    corrupt(store, image.layers[0].blob.digest)  # same size: only the digest tells
    out = tmp_path / "out.tar"
    with pytest.raises(StoreError, match=f"^blob {image.layers[0].blob.digest} is corrupt"):
        save_oci_archive(store, ["one"], out)
    assert not out.exists() and list(tmp_path.glob(".out.tar*")) == []


class _Listing:
    """Another format, as a docker-archive writer will be: it sees images and blobs only."""

    def write(self, source: LayoutReader, out: BinaryIO) -> None:
        for named in source.images:
            out.write(f"{named.name} {named.image.id}\n".encode())
        for blob in source.blobs():
            with source.open(blob) as stream:
                out.write(f"{blob.digest} {source.size(blob)} {len(stream.read())}\n".encode())


def test_a_writer_slots_in_beside_the_oci_archive(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    image = make_image(store, tmp_path, "one", "one")
    out = tmp_path / "list.txt"
    export(store.layout, ["one"], out, _Listing())
    lines = out.read_text().splitlines()
    assert lines[0] == f"one:latest {image.id}"
    assert [line.split()[0] for line in lines[1:]] == [b.digest for b in image.blobs()]
    assert all(line.split()[1] == line.split()[2] for line in lines[1:])


def test_reader_refuses_a_missing_blob(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    image = make_image(store, tmp_path, "one", "one")
    store.layout.delete(image.layers[0].blob.digest)
    with pytest.raises(StoreError, match="missing"):
        export(store.layout, ["one"], tmp_path / "out", _Listing())
    assert not (tmp_path / "out").exists()
