import json
import multiprocessing
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.errors import ImageNotFound, LayerError, StoreError
from builder.image.config import ContainerConfig, History, ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.store import Store


def _image(store: Store, tmp: Path, text: str, name: str) -> tuple[Descriptor, Digest]:
    src = tmp / f"src-{text}"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "msg").write_text(text)
    # Debian's oci-image-tool (1.0.0-rc1) predates zstd layers: gzip for the oracle.
    layer, diff_id = store.put_layer(src, Compression.GZIP)
    config = ImageConfig(created="2024-01-01T00:00:00Z",
                         config=ContainerConfig(cmd=("/bin/sh",)))  # fmt: skip
    config = config.with_layer(diff_id, History(created_by=f"ADD {text}"))
    manifest = store.write_image(config, [layer])
    store.tag(name, manifest)
    return manifest, diff_id


def test_layout_validates_with_oci_image_tool(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    _image(store, tmp_path, "one", "one")
    _image(store, tmp_path, "two", "localhost:5000/team/two:v2")
    assert [n for n, _ in store.images()] == ["one:latest", "localhost:5000/team/two:v2"]
    assert json.loads((store.layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    proc = subprocess.run(["oci-image-tool", "validate", "--type", "image", str(store.layout)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.stat(store.root).st_mode & 0o777 == 0o700
    assert list(store.tmp.iterdir()) == []


def test_round_trips_and_resolve(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    manifest, diff_id = _image(store, tmp_path, "hello", "app:1")
    m = store.manifest(manifest)
    cfg = store.config(m)
    assert cfg.diff_ids == (diff_id,) and cfg.config.cmd == ("/bin/sh",)
    assert store.resolve("app:1").digest == manifest.digest
    assert store.resolve(str(manifest.digest)).digest == manifest.digest
    assert store.resolve(m.config.digest.hex[:12]).digest == manifest.digest
    with pytest.raises(ImageNotFound):
        store.resolve("app:2")
    d = store.put_json({"b": 1, "a": 2}, MediaType.OCI_CONFIG)
    assert store.read_blob(d.digest) == b'{"a":2,"b":1}'
    assert d.digest == Digest.of_bytes(b'{"a":2,"b":1}') and d.size == 13
    assert store.put_bytes(b'{"a":2,"b":1}', "x").digest == d.digest  # idempotent
    layer_dir = store.layer_dir(m.layers[0], diff_id)
    assert (layer_dir / "etc" / "msg").read_text() == "hello"
    assert store.layer_dir(m.layers[0], diff_id) == layer_dir
    store.tag("app:2", manifest)
    store.untag("app:1")
    assert [n for n, _ in store.images()] == ["app:2"]
    with pytest.raises(ImageNotFound):
        store.untag("app:1")
    assert Store.open(store.root).images() == store.images()  # reopen sees the same


def test_corrupt_blob_detected(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    d = store.put_bytes(b"precious data", "application/octet-stream")
    path = store.blob_path(d.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"precious dat4")
    with pytest.raises(StoreError, match="corrupt"):
        store.read_blob(d.digest)
    with pytest.raises(StoreError, match="missing"):
        store.read_blob(Digest.of_bytes(b"never stored"))


def test_corrupt_layer_blob_refused_by_layer_dir(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    manifest, diff_id = _image(store, tmp_path, "x", "x")
    layer = store.manifest(manifest).layers[0]
    wrong = Digest.of_bytes(b"wrong")
    expected = f"layer content is {diff_id}, expected diff_id {wrong}"
    with pytest.raises(LayerError, match=f"^{re.escape(expected)}$"):
        store.layer_dir(layer, wrong)
    assert not (store.layers / wrong.hex).exists()
    assert list(store.tmp.iterdir()) == []


def test_blob_writer_removes_temp_on_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    with pytest.raises(RuntimeError), store.blob_writer() as w:
        w.write(b"partial")
        raise RuntimeError("boom")
    assert list(store.tmp.iterdir()) == [] and list(store.blobs.iterdir()) == []


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "stuff").write_text("x")
    with pytest.raises(StoreError, match="not an image store"):
        Store.open(tmp_path)


def _tag_many(root: str, worker: int) -> None:
    store = Store.open(Path(root))
    d = store.put_bytes(f"manifest {worker}".encode(), MediaType.OCI_MANIFEST)
    for i in range(40):
        store.tag(f"w{worker}-{i}", d)


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
    names = sorted(n for n, _ in Store.open(root).images())
    assert len(names) == 80  # no update lost to a read-modify-write race


def test_gc(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    keep, _ = _image(store, tmp_path, "keep", "keep")
    drop, drop_diff = _image(store, tmp_path, "drop", "drop")
    cached = store.put_bytes(b"cached layer", MediaType.OCI_LAYER)
    store.cache_put("k1", {"layer": cached.to_json(), "diff_id": str(cached.digest)})
    assert store.cache_get("k1") is not None and store.cache_get("absent") is None
    store.layer_dir(store.manifest(drop).layers[0], drop_diff)
    stale = store.tmp / "upper-999999999-abc"  # a pid that cannot be alive
    stale.mkdir()
    live = store.tmp_dir("upper")
    store.untag("drop")
    freed = store.gc()
    assert freed > 0
    assert store.has_blob(keep.digest) and store.has_blob(cached.digest)
    assert not store.has_blob(drop.digest)
    assert not (store.layers / drop_diff.hex).exists()
    assert not stale.exists() and live.exists()
    subprocess.run(["oci-image-tool", "validate", "--type", "image", str(store.layout)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert store.gc() == 0
    with store.lease(), pytest.raises(StoreError, match="build is using"):
        store.gc()
    shutil.rmtree(live)
    store.gc(prune_cache=True)
    assert not store.has_blob(cached.digest) and store.cache_get("k1") is None
