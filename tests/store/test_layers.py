"""root/layers: unpacked on first use, verified against the blob digest and the diff_id."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from builder.errors import LayerError, StoreError
from builder.image.digest import Digest
from builder.store import Store
from builder.store import layers as layers_module
from tests.store.support import corrupt, make_image


def test_get_unpacks_once(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    (layer,) = make_image(store, tmp_path, "hello").layers
    assert not store.layers.has(layer.diff_id)
    path = store.layers.get(layer.blob, layer.diff_id)
    assert path == store.paths.layer(layer.diff_id)
    assert (path / "etc" / "msg").read_text() == "hello"
    (path / "marker").write_text("same dir")
    assert store.layers.get(layer.blob, layer.diff_id) == path
    assert (path / "marker").exists()  # not unpacked again
    assert list(store.layers.diff_ids()) == [layer.diff_id]
    assert list(store.paths.tmp.iterdir()) == []


def test_corrupt_layer_blob_refused_by_layer_dir(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    (layer,) = make_image(store, tmp_path, "x").layers
    wrong = Digest.of_bytes(b"wrong")
    expected = f"layer content is {layer.diff_id}, expected diff_id {wrong}"
    with pytest.raises(LayerError, match=f"^{re.escape(expected)}$"):
        store.layers.get(layer.blob, wrong)
    assert not store.paths.layer(wrong).exists()
    assert list(store.paths.tmp.iterdir()) == []


def test_blob_that_fails_its_digest_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    (layer,) = make_image(store, tmp_path, "x").layers
    corrupt(store, layer.blob.digest)  # the gzip trailer: the tar itself still reads whole
    with pytest.raises(StoreError, match=f"^blob {layer.blob.digest} is corrupt"):
        store.layers.get(layer.blob, layer.diff_id)
    assert not store.layers.has(layer.diff_id)
    assert list(store.paths.tmp.iterdir()) == []


def test_adopt_moves_in_or_drops_a_duplicate(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    diff_id = Digest.of_bytes(b"tar")
    first = store.tmp_dir("upper")
    (first / "f").write_text("first")
    assert store.layers.adopt(diff_id, first) == store.paths.layer(diff_id)
    assert not first.exists()
    second = store.tmp_dir("upper")
    (second / "f").write_text("second")
    target = store.layers.adopt(diff_id, second)
    assert (target / "f").read_text() == "first" and not second.exists()
    assert store.layers.delete(diff_id) > 0 and not store.layers.has(diff_id)


def test_a_builds_adopt_leaves_the_dirs_fsync_to_the_finisher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In place at once; made durable on the finisher's thread, after the jobs before it
    (the blob's commit) and before those after it (the records)."""
    store = Store.open(tmp_path / "s")
    done: list[str] = []
    real = layers_module.fsync_dir

    def fsync_dir(path: Path) -> None:
        done.append(f"fsync on {threading.current_thread().name}")
        real(path)

    monkeypatch.setattr(layers_module, "fsync_dir", fsync_dir)
    gate = threading.Event()
    store.finishing.submit(gate.wait)  # a blob's commit, still going
    store.layers.adopt(Digest.of_bytes(b"a"), store.tmp_dir("upper"), background=store.finishing)
    store.finishing.submit(lambda: done.append("record"))
    assert store.layers.has(Digest.of_bytes(b"a")) and not done
    gate.set()
    store.finish()
    assert done == ["fsync on finisher", "record"]
    store.layers.adopt(Digest.of_bytes(b"b"), store.tmp_dir("upper"))  # (not a build's)
    assert done[-1] == f"fsync on {threading.current_thread().name}"
