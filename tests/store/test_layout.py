"""root/layout: blobs (a verifying BlobStore) and index.json (the image names)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import threading
from pathlib import Path

import pytest

from builder.errors import ImageNotFound, StoreError
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.image.mediatypes import MediaType
from builder.store import BlobStore, Store
from builder.store.blobs import BACKGROUND_HASH
from tests.store.support import corrupt, make_image


def test_layout_validates_with_oci_image_tool(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    make_image(store, tmp_path, "one", "one")
    make_image(store, tmp_path, "two", "localhost:5000/team/two:v2")
    assert [n for n, _ in store.layout.refs()] == ["one:latest", "localhost:5000/team/two:v2"]
    assert json.loads(store.paths.oci_layout_file.read_text()) == {"imageLayoutVersion": "1.0.0"}
    validate = ["oci-image-tool", "validate", "--type", "image", str(store.paths.layout)]
    proc = subprocess.run(validate, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(store.paths.tmp.iterdir()) == []


def test_blob_store_protocol(tmp_path: Path) -> None:
    blobs: BlobStore = Store.open(tmp_path / "s").layout
    d = blobs.put(b'{"a":2,"b":1}', MediaType.OCI_CONFIG)
    assert d.digest == Digest.of_bytes(b'{"a":2,"b":1}') and d.size == 13
    assert blobs.read(d.digest) == b'{"a":2,"b":1}'
    assert blobs.put(b'{"a":2,"b":1}', "x").digest == d.digest  # idempotent
    assert blobs.stat(d.digest) == 13
    with blobs.writer() as w:
        w.write(b"streamed ")
        w.write(b"in parts")
        streamed = w.commit(MediaType.OCI_LAYER)
    assert blobs.read(streamed.digest) == b"streamed in parts"
    assert sorted(blobs.digests()) == sorted([d.digest, streamed.digest])
    assert blobs.delete(d.digest) == 13 and blobs.delete(d.digest) == 0
    assert blobs.stat(d.digest) is None
    assert list(blobs.digests()) == [streamed.digest]


def test_put_json_is_canonical(tmp_path: Path) -> None:
    layout = Store.open(tmp_path / "s").layout
    d = layout.put_json({"b": 1, "a": 2}, MediaType.OCI_CONFIG)
    assert layout.read(d.digest) == b'{"a":2,"b":1}'


def test_corrupt_blob_detected(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    d = store.layout.put(b"precious data", "application/octet-stream")
    corrupt(store, d.digest)
    with pytest.raises(StoreError, match=f"^blob {d.digest} is corrupt"):
        store.layout.read(d.digest)
    with pytest.raises(StoreError, match="missing"):
        store.layout.read(Digest.of_bytes(b"never stored"))


def test_putting_a_blob_again_writes_only_to_heal_it(tmp_path: Path) -> None:
    """The same bytes again leave the file as it is (a cached build re-puts its config and
    manifest: no temp file, no fsync); a copy whose bytes differ on disk is replaced."""
    store = Store.open(tmp_path / "s")
    d = store.layout.put(b'{"config":1}', MediaType.OCI_CONFIG)
    path = store.paths.blob(d.digest)
    before = path.stat()
    assert store.layout.put(b'{"config":1}', MediaType.OCI_CONFIG) == d
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns
    corrupt(store, d.digest)
    assert store.layout.put(b'{"config":1}', MediaType.OCI_CONFIG) == d
    assert path.stat().st_ino != before.st_ino
    assert store.layout.read(d.digest) == b'{"config":1}'


def test_tagging_again_leaves_the_index_as_it_is(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    image = make_image(store, tmp_path, "one", "one")
    make_image(store, tmp_path, "two", "two")
    before = store.paths.index.stat()
    store.layout.tag("two", store.layout.resolve("two"))  # the last entry, unchanged
    assert store.paths.index.stat().st_ino == before.st_ino
    # Not the last one either (a store holding several names, each rebuilt from cache).
    store.layout.tag("one", image.descriptor)
    assert store.paths.index.stat().st_ino == before.st_ino
    assert [n for n, _ in store.layout.refs()] == ["one:latest", "two:latest"]
    store.layout.tag("one", store.layout.resolve("two"))  # another image: written
    assert store.paths.index.stat().st_ino != before.st_ino
    assert [n for n, _ in store.layout.refs()] == ["two:latest", "one:latest"]
    assert store.layout.resolve("one").digest == store.layout.resolve("two").digest


def test_a_big_blob_is_verified_by_its_background_hash(tmp_path: Path) -> None:
    """Above BACKGROUND_HASH the digest is computed on a thread beside the reader: the
    bytes read are still the blob's, and a flipped byte still fails at EOF, whatever the
    read sizes (a push reads 1 MiB at a time, `read()` all at once)."""
    store = Store.open(tmp_path / "s")
    data = os.urandom(BACKGROUND_HASH + 12345)
    d = store.layout.put(data, "application/octet-stream")
    assert store.layout.read(d.digest) == data
    with store.layout.open(d.digest) as f:
        got = b"".join(iter(lambda: f.read(1 << 20), b""))
    assert got == data
    corrupt(store, d.digest)
    with pytest.raises(StoreError, match=f"^blob {d.digest} is corrupt"):
        store.layout.read(d.digest)
    with (
        pytest.raises(StoreError, match=f"^blob {d.digest} is corrupt"),
        store.layout.open(d.digest) as f,
    ):
        while f.read(1 << 20):
            pass
    with store.layout.open(d.digest) as f:  # closed half-read: the thread stops
        f.read(1 << 20)
    assert not [t for t in threading.enumerate() if t.name == "verify"]


def test_only_sha256(tmp_path: Path) -> None:
    layout = Store.open(tmp_path / "s").layout
    with pytest.raises(StoreError, match="sha256 blobs only"):
        layout.read(Digest.of_bytes(b"x", "sha512"))


def test_blob_writer_removes_temp_on_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    with pytest.raises(RuntimeError), store.layout.writer() as w:
        w.write(b"partial")
        raise RuntimeError("boom")
    assert list(store.paths.tmp.iterdir()) == [] and list(store.paths.blobs.iterdir()) == []


def test_tag_untag_resolve(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    image = make_image(store, tmp_path, "hello", "app:1")
    layout = store.layout
    assert layout.resolve("app:1").digest == image.digest
    assert layout.resolve(str(image.digest)).digest == image.digest
    assert layout.resolve(image.id.hex[:12]).digest == image.digest
    with pytest.raises(ImageNotFound):
        layout.resolve("app:2")
    layout.tag("app:2", image.descriptor)
    layout.untag("app:1")
    assert [n for n, _ in layout.refs()] == ["app:2"]
    with pytest.raises(ImageNotFound):
        layout.untag("app:1")
    assert Store.open(store.root).layout.refs() == layout.refs()  # reopen sees the same


def test_image_is_loaded_whole(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    made = make_image(store, tmp_path, "hello", "app:1")
    image = store.layout.image(store.layout.resolve("app:1"))
    assert (image.manifest, image.config) == (made.manifest, made.config)
    assert [layer.diff_id for layer in image.layers] == list(made.config.diff_ids)


def test_an_image_whose_manifest_and_config_disagree_is_a_store_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    made = make_image(store, tmp_path, "hello")
    two = Manifest(made.manifest.config, made.manifest.layers * 2)
    desc = store.layout.put_json(two.to_json(), MediaType.OCI_MANIFEST)
    with pytest.raises(StoreError, match="manifest has 2 layers but the config lists 1"):
        store.layout.image(desc)


def _tag_many(root: str, worker: int) -> None:
    store = Store.open(Path(root))
    d = store.layout.put(f"manifest {worker}".encode(), MediaType.OCI_MANIFEST)
    for i in range(40):
        store.layout.tag(f"w{worker}-{i}", d)


def test_concurrent_tagging_from_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.open(root)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tag_many, args=(str(root), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(n for n, _ in Store.open(root).layout.refs())
    assert len(names) == 80  # no update lost to a read-modify-write race
