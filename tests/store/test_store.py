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
from builder.store import StepRecord, Store


def _image(store: Store, tmp: Path, text: str, name: str) -> tuple[Descriptor, Digest]:
    src = tmp / f"src-{text}"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "msg").write_text(text)
    # Debian's oci-image-tool (1.0.0-rc1) predates zstd layers: gzip for the oracle.
    layer, diff_id = store.put_layer(src, Compression.GZIP)
    config = ImageConfig(created="2024-01-01T00:00:00Z",
                         config=ContainerConfig(cmd=("/bin/sh",)))  # fmt: skip
    config = config.with_layer(diff_id, History(created_by=f"ADD {text}"))
    image = store.write_image(config, [layer])
    store.layout.tag(name, image.descriptor)
    return image.descriptor, diff_id


def test_layout_validates_with_oci_image_tool(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    _image(store, tmp_path, "one", "one")
    _image(store, tmp_path, "two", "localhost:5000/team/two:v2")
    assert [n for n, _ in store.layout.refs()] == ["one:latest", "localhost:5000/team/two:v2"]
    assert json.loads(store.paths.oci_layout_file.read_text()) == {"imageLayoutVersion": "1.0.0"}
    proc = subprocess.run(["oci-image-tool", "validate", "--type", "image", str(store.paths.layout)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.stat(store.root).st_mode & 0o777 == 0o700
    assert list(store.paths.tmp.iterdir()) == []


def test_round_trips_and_resolve(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    manifest, diff_id = _image(store, tmp_path, "hello", "app:1")
    m = store.layout.manifest(manifest)
    cfg = store.layout.config(m)
    assert cfg.diff_ids == (diff_id,) and cfg.config.cmd == ("/bin/sh",)
    assert store.layout.resolve("app:1").digest == manifest.digest
    assert store.layout.resolve(str(manifest.digest)).digest == manifest.digest
    assert store.layout.resolve(m.config.digest.hex[:12]).digest == manifest.digest
    with pytest.raises(ImageNotFound):
        store.layout.resolve("app:2")
    d = store.layout.put_json({"b": 1, "a": 2}, MediaType.OCI_CONFIG)
    assert store.layout.read(d.digest) == b'{"a":2,"b":1}'
    assert d.digest == Digest.of_bytes(b'{"a":2,"b":1}') and d.size == 13
    assert store.layout.put(b'{"a":2,"b":1}', "x").digest == d.digest  # idempotent
    layer_dir = store.layers.get(m.layers[0], diff_id)
    assert (layer_dir / "etc" / "msg").read_text() == "hello"
    assert store.layers.get(m.layers[0], diff_id) == layer_dir
    store.layout.tag("app:2", manifest)
    store.layout.untag("app:1")
    assert [n for n, _ in store.layout.refs()] == ["app:2"]
    with pytest.raises(ImageNotFound):
        store.layout.untag("app:1")
    assert Store.open(store.root).layout.refs() == store.layout.refs()  # reopen sees the same


def test_corrupt_blob_detected(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    d = store.layout.put(b"precious data", "application/octet-stream")
    path = store.paths.blob(d.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"precious dat4")
    with pytest.raises(StoreError, match="corrupt"):
        store.layout.read(d.digest)
    with pytest.raises(StoreError, match="missing"):
        store.layout.read(Digest.of_bytes(b"never stored"))


def test_corrupt_layer_blob_refused_by_layer_dir(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    manifest, diff_id = _image(store, tmp_path, "x", "x")
    layer = store.layout.manifest(manifest).layers[0]
    wrong = Digest.of_bytes(b"wrong")
    expected = f"layer content is {diff_id}, expected diff_id {wrong}"
    with pytest.raises(LayerError, match=f"^{re.escape(expected)}$"):
        store.layers.get(layer, wrong)
    assert not (store.paths.layers / wrong.hex).exists()
    assert list(store.paths.tmp.iterdir()) == []


def test_blob_writer_removes_temp_on_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    with pytest.raises(RuntimeError), store.layout.writer() as w:
        w.write(b"partial")
        raise RuntimeError("boom")
    assert list(store.paths.tmp.iterdir()) == [] and list(store.paths.blobs.iterdir()) == []


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "stuff").write_text("x")
    with pytest.raises(StoreError, match="not an image store"):
        Store.open(tmp_path)


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


def test_gc(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    keep, _ = _image(store, tmp_path, "keep", "keep")
    drop, drop_diff = _image(store, tmp_path, "drop", "drop")
    cached = store.layout.put(b"cached layer", MediaType.OCI_LAYER)
    store.cache.put("k1", StepRecord("2024-01-01T00:00:00Z", cached, cached.digest))
    store.layers.get(store.layout.manifest(drop).layers[0], drop_diff)
    stale = store.paths.tmp / "upper-999999999-abc"  # a pid that cannot be alive
    stale.mkdir()
    live = store.tmp_dir("upper")
    store.layout.untag("drop")
    freed = store.gc()
    assert freed > 0
    assert store.layout.has(keep.digest) and store.layout.has(cached.digest)
    assert not store.layout.has(drop.digest)
    assert not (store.paths.layers / drop_diff.hex).exists()
    assert not stale.exists() and live.exists()
    subprocess.run(["oci-image-tool", "validate", "--type", "image", str(store.paths.layout)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert store.gc() == 0
    with store.lease(), pytest.raises(StoreError, match="build is using"):
        store.gc()
    shutil.rmtree(live)
    store.gc(prune_cache=True)
    assert not store.layout.has(cached.digest) and store.cache.get("k1", StepRecord) is None
