"""gc: keeps what index.json and step records reach, sweeps the rest; never under a lease."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.image.mediatypes import MediaType
from builder.store import JsonRecord, StepRecord, Store
from tests.store.support import make_image

CREATED = "2024-01-01T00:00:00Z"


def test_gc(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    keep = make_image(store, tmp_path, "keep", "keep")
    drop = make_image(store, tmp_path, "drop", "drop")
    (drop_layer,) = drop.layers
    cached = store.layout.put(b"cached layer", MediaType.OCI_LAYER)
    store.cache.put("k1", StepRecord(CREATED, cached, cached.digest))
    store.layers.get(drop_layer.blob, drop_layer.diff_id)
    stale = store.paths.tmp / "upper-999999999-abc"  # a pid that cannot be alive
    stale.mkdir()
    live = store.tmp_dir("upper")
    store.layout.untag("drop")
    freed = store.gc()
    assert freed > 0
    assert all(store.layout.has(blob.digest) for blob in keep.blobs())
    assert store.layout.has(cached.digest)
    assert not any(store.layout.has(blob.digest) for blob in drop.blobs())
    assert not store.layers.has(drop_layer.diff_id)
    assert not stale.exists() and live.exists()
    subprocess.run(["oci-image-tool", "validate", "--type", "image", str(store.paths.layout)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert store.gc() == 0
    with store.lease(), pytest.raises(StoreError, match="the store is in use by"):
        store.gc()
    store.gc(prune_cache=True)
    assert not store.layout.has(cached.digest) and store.cache.get("k1", StepRecord) is None


def test_step_records_keep_their_unpacked_layers(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    image = make_image(store, tmp_path, "cached")  # untagged: only the record reaches it
    (layer,) = image.layers
    store.layers.get(layer.blob, layer.diff_id)
    store.cache.put("step", StepRecord(CREATED, layer.blob, layer.diff_id))
    store.gc()
    assert store.layout.has(layer.blob.digest) and store.layers.has(layer.diff_id)
    assert not store.layout.has(image.digest)  # the manifest nothing names goes


def test_malformed_and_foreign_records_neither_crash_nor_keep(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    image = make_image(store, tmp_path, "x")
    (layer,) = image.layers
    (store.paths.cache / "broken.json").write_text('{"created": 5, "layer": ')
    store.cache.put("memo", JsonRecord({"digest": str(layer.blob.digest)}))
    assert store.gc() > 0
    assert not store.layout.has(layer.blob.digest)
    assert sorted(store.cache.stored_keys()) == ["broken", "memo"]  # gc drops no record


def test_prune_containers_and_cache_mounts(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    container = store.containers.create()
    (container.upper / "f").write_text("x")
    mount = store.cache_mounts.get("pip", mode=0o755, uid=0, gid=0)
    (mount / "wheel").write_text("x")
    store.gc()
    assert container.upper.exists() and mount.exists()  # only when asked
    store.gc(prune_containers=True)
    assert store.containers.list() == [] and mount.exists()
    store.gc(prune_cache=True)
    assert not mount.exists()


def test_gc_knows_the_parts_not_the_store() -> None:
    """No cycle with store.py (gc imported Store, store.py imported gc), and only the parts'
    public methods (gc read Store._read_index)."""
    import builder.store.gc as gc

    tree = ast.parse(Path(gc.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not imported & {"builder.store", "builder.store.store"}
    private = [
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and ast.unparse(node.value) != "self"
    ]
    assert private == []
