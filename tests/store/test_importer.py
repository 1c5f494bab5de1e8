"""import_rootfs: a directory or a tarball becomes a one-layer image whose layer is unpacked
at once (as docker load/pull leave it), so the first build or run mounts what is there."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from builder.store import Store
from builder.store.importer import import_rootfs


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "msg").write_text("imported")
    os.symlink("etc/msg", root / "link")
    return root


@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_the_imported_layer_is_unpacked_at_once(tmp_path: Path, kind: str) -> None:
    source = _rootfs(tmp_path)
    if kind == "tar":
        tarball = tmp_path / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(source, arcname=".")
        source = tarball
    store = Store.open(tmp_path / "s")
    image = store.image(import_rootfs(store, source, "imported:1"))
    (layer,) = image.layers
    assert store.layers.has(layer.diff_id)  # before anything asked for it
    unpacked = store.paths.layer(layer.diff_id)
    assert (unpacked / "etc" / "msg").read_text() == "imported"
    assert os.readlink(unpacked / "link") == "etc/msg"
    assert list(store.paths.tmp.iterdir()) == []
    # What a lazy unpack of the same blob gives: the same tree (the layer dir is its form).
    store.layers.delete(layer.diff_id)
    again = store.layers.get(layer.blob, layer.diff_id)
    assert sorted(p.relative_to(again) for p in again.rglob("*")) == [
        Path("etc"),
        Path("etc/msg"),
        Path("link"),
    ]
