"""root/layers: unpacked on first use, verified against the blob digest and the diff_id."""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from pathlib import Path

import pytest

from builder.errors import LayerError, StoreError
from builder.image.digest import Digest
from builder.store import Store
from builder.store import layers as layers_module
from builder.store.atomic import syncfs
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


def test_sync_makes_adopted_layers_durable_once_for_all_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "s")
    synced: list[Path] = []
    real = layers_module.syncfs
    monkeypatch.setattr(layers_module, "syncfs", lambda p: (synced.append(p), real(p)))
    store.layers.sync()
    assert synced == []  # nothing adopted: nothing to write back
    for n in range(2):  # a finisher that fell behind: one syncfs covers both
        upper = store.tmp_dir("upper")
        (upper / "f").write_text(str(n))
        store.layers.adopt(Digest.of_bytes(str(n).encode()), upper)
    store.layers.sync()
    store.layers.sync()
    assert synced == [store.paths.layers]
    upper = store.tmp_dir("upper")
    store.layers.adopt(Digest.of_bytes(b"2"), upper)
    store.layers.sync()
    assert len(synced) == 2


def test_a_sync_costs_what_is_unmarked_not_the_whole_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It runs on every build step: the layers a sync marked already are not asked again
    one by one (a stat each took 44 ms of CPU per step in a store of 550 layers)."""
    store = Store.open(tmp_path / "s")
    for n in range(200):
        store.layers.adopt(Digest.of_bytes(b"old %d" % n), store.tmp_dir("upper"))
    store.layers.sync()
    assert len(list(store.paths.synced_layers.iterdir())) == 200
    new = Digest.of_bytes(b"new")
    store.layers.adopt(new, store.tmp_dir("upper"))
    stats: list[object] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: (stats.append(a[0]), real_stat(*a, **k))[1])
    store.layers.sync()
    assert store.paths.synced_layer(new).exists()  # the new one is marked
    assert len(stats) < 10  # (its own, and the boot-time check: not one per layer)


def test_a_failed_sync_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An I/O error of the disk cannot be caused for real here: syncfs is made to fail.
    store = Store.open(tmp_path / "s")
    store.layers.adopt(Digest.of_bytes(b"x"), store.tmp_dir("upper"))

    def eio(path: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(layers_module, "syncfs", eio)
    message = "cannot write the store's unpacked layers to disk: Input/output error"
    with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
        store.layers.sync()


def test_syncfs_is_the_real_system_call(tmp_path: Path) -> None:
    syncfs(tmp_path)  # no error on a real file system
    with pytest.raises(OSError) as caught:
        syncfs(tmp_path / "missing")
    assert caught.value.errno == errno.ENOENT


def _reboot_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the machine booted this instant: every dir made so far is from before it."""
    # ctimes come from the kernel's coarse clock (up to a tick behind time.time()): keep
    # what was made on either side of the boot well apart.
    time.sleep(0.05)
    boot = time.time()
    monkeypatch.setattr(layers_module, "_boot_time", lambda: boot)
    time.sleep(0.05)


def test_after_a_reboot_a_layer_never_synced_is_unpacked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash can leave a layer dir whose files lost their data (the rename reached the
    disk, the blocks did not); one a sync covered is whole."""
    store = Store.open(tmp_path / "s")
    (synced,) = make_image(store, tmp_path, "synced").layers
    kept = store.layers.get(synced.blob, synced.diff_id)
    store.layers.sync()
    (unsynced,) = make_image(store, tmp_path, "unsynced").layers
    torn = store.layers.get(unsynced.blob, unsynced.diff_id)
    (torn / "etc" / "msg").write_text("")  # what a crash can leave
    (kept / "canary").write_text("not unpacked again")
    _reboot_now(monkeypatch)
    store = Store.open(tmp_path / "s")
    assert store.layers.has(synced.diff_id) and not store.layers.has(unsynced.diff_id)
    assert store.layers.get(synced.blob, synced.diff_id) == kept
    assert (kept / "canary").exists()
    assert store.layers.get(unsynced.blob, unsynced.diff_id) == torn
    assert (torn / "etc" / "msg").read_text() == "unsynced"  # unpacked again from its blob
    assert store.layers.has(unsynced.diff_id)  # made since the boot
    store.scratch.settle()
    assert list(store.paths.tmp.iterdir()) == []  # the torn one put aside, then removed
    assert store.layers.delete(synced.diff_id) > 0
    assert not store.paths.synced_layer(synced.diff_id).exists()


def test_adopt_replaces_an_untrusted_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    diff_id = Digest.of_bytes(b"tar")
    first = store.tmp_dir("upper")
    (first / "f").write_text("from before the crash")
    store.layers.adopt(diff_id, first)
    _reboot_now(monkeypatch)
    second = store.tmp_dir("upper")
    (second / "f").write_text("made again")
    target = store.layers.adopt(diff_id, second)
    assert (target / "f").read_text() == "made again" and store.layers.has(diff_id)


def test_a_builds_adopt_leaves_the_dirs_sync_to_the_finisher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In place at once; made durable (the rename and the files: one syncfs) on the
    finisher's thread, after the jobs before it (the blob's commit) and before those after
    it (the records)."""
    store = Store.open(tmp_path / "s")
    done: list[str] = []
    real_fsync, real_syncfs = layers_module.fsync_dir, layers_module.syncfs

    def fsync_dir(path: Path) -> None:
        done.append(f"fsync on {threading.current_thread().name}")
        real_fsync(path)

    def syncfs(path: Path) -> None:
        done.append(f"syncfs on {threading.current_thread().name}")
        real_syncfs(path)

    monkeypatch.setattr(layers_module, "fsync_dir", fsync_dir)
    monkeypatch.setattr(layers_module, "syncfs", syncfs)
    gate = threading.Event()
    store.finishing.submit(gate.wait)  # a blob's commit, still going
    store.layers.adopt(Digest.of_bytes(b"a"), store.tmp_dir("upper"), background=store.finishing)
    store.finishing.submit(lambda: done.append("record"))
    assert store.layers.has(Digest.of_bytes(b"a")) and not done
    gate.set()
    store.finish()
    assert done == ["syncfs on finisher", "record"]
    store.layers.adopt(Digest.of_bytes(b"b"), store.tmp_dir("upper"))  # (not a build's)
    assert done[-1] == f"fsync on {threading.current_thread().name}"
