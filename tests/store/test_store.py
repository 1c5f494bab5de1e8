"""Store: opening a root, and what spans its parts (an image by name, writing images)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import ImageNotFound, StoreError
from builder.image.config import ImageConfig
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.store import Store
from tests.store.support import make_image


def test_open_creates_an_empty_layout(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    assert os.stat(store.root).st_mode & 0o777 == 0o700
    for d in (store.paths.blobs, store.paths.layers, store.paths.cache, store.paths.tmp):
        assert d.is_dir()
    assert store.paths.index.read_text() == (
        '{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}'
    )
    assert store.layout.refs() == []


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "stuff").write_text("x")
    with pytest.raises(StoreError, match="not an image store"):
        Store.open(tmp_path)


def test_a_store_whose_creation_was_cut_short_opens(tmp_path: Path) -> None:
    for name in ("lock", "tmp", "layout"):
        (tmp_path / name).mkdir() if name != "lock" else (tmp_path / name).touch()
    assert Store.open(tmp_path).paths.oci_layout_file.is_file()


def test_image_by_name_or_descriptor(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    made = make_image(store, tmp_path, "hello", "app:1")
    by_name = store.image("app:1")
    assert by_name.manifest == made.manifest and by_name.config == made.config
    assert store.image(made.descriptor).id == made.id
    assert store.image(made.id.hex[:12]).digest == made.digest  # an image ID prefix
    with pytest.raises(ImageNotFound):
        store.image("app:2")


def test_write_image_returns_the_stored_image(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    made = make_image(store, tmp_path, "hello")
    host = Platform.host()
    assert made.descriptor.platform == Platform(host.architecture, host.os, host.variant)
    assert made.descriptor.media_type == MediaType.OCI_MANIFEST
    assert store.layout.read(made.digest) == store.layout.read(made.descriptor.digest)
    assert Digest.of_bytes(store.layout.read(made.id)) == made.id
    assert store.image(made.descriptor).manifest == made.manifest


def test_write_image_refuses_what_does_not_add_up(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    made = make_image(store, tmp_path, "hello")
    with pytest.raises(StoreError, match="1 layers but its config lists 0"):
        store.write_image(ImageConfig(), made.manifest.layers)
    store.layout.delete(made.layers[0].blob.digest)
    with pytest.raises(StoreError, match="is not in the store"):
        store.write_image(made.config, made.manifest.layers)


def test_unpacked_gives_the_lowerdirs_bottom_first(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    made = make_image(store, tmp_path, "hello")
    (lower,) = store.unpacked(made)
    assert lower == store.paths.layer(made.layers[0].diff_id)
    assert (lower / "etc" / "msg").read_text() == "hello"
