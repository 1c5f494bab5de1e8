"""Layer blobs finish in the background (store/finishing): their fsync and rename, and the
records naming them, run behind the next steps. The image is the one a build that waits
gives, and a blob that cannot be put in place fails the build with one error line, leaving
a store `builder fsck` finds clean: no record names the blob that failed.

The fault is real: the store's blob dir made immutable (chattr +i), so the rename of the
finished blob into it fails (EPERM), after the step itself succeeded."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import StoreError
from tests.e2e.support import Builder, make_context

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

RECIPE = "FROM busybox:latest\nCOPY . /app/\nRUN echo two > /two\nRUN echo three > /three\n"


def _context(tmp_path: Path) -> Path:
    context = make_context(tmp_path, RECIPE, {f"d/f{i}.txt": f"{i}\n" * 500 for i in range(50)})
    (context / "big.bin").write_bytes(bytes(range(256)) * 40_000)
    return context


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _image(store: Builder, name: str) -> tuple[str, list[str]]:
    (info,) = json.loads(store("inspect", name).stdout)
    return info["Id"], [layer["digest"] for layer in info["Manifest"]["layers"]]


def test_background_blobs_give_the_image_of_a_build_that_waits(
    tmp_path: Path, busybox_store: Path
) -> None:
    """Every layer's blob is in place and named once the build returns, and a --no-cache
    build in another store (a fresh run of every step) gives the same image."""
    context = _context(tmp_path)
    flags = ("--source-date-epoch", "1700000000")
    stores = []
    for name in ("one", "two"):
        stores.append(Builder(tmp_path / name))
        shutil.copytree(busybox_store, stores[-1].root, symlinks=True)
    stores[0]("build", *flags, "-t", "app", context)
    stores[1]("build", "--no-cache", *flags, "-t", "app", context)
    (one_id, one_layers), (two_id, two_layers) = (_image(s, "app") for s in stores)
    assert one_id == two_id and one_layers == two_layers
    for layer in one_layers:
        assert (stores[0].root / "layout/blobs/sha256" / layer.partition(":")[2]).is_file()
    again = stores[0]("build", *flags, "-t", "app", context)  # every step's record is there
    assert "(3/3 steps cached)" in again.stderr, again.stderr
    assert stores[0]("fsck").status == 0


def test_a_blob_that_cannot_be_put_in_place_fails_the_build_cleanly(
    tmp_path: Path, busybox_store: Path
) -> None:
    context = _context(tmp_path)
    store = Builder(tmp_path / "store")
    shutil.copytree(busybox_store, store.root, symlinks=True)
    blobs = store.root / "layout" / "blobs" / "sha256"
    before = set(blobs.iterdir())
    with _immutable(blobs):
        out = store("build", "-t", "app", context, check=False)
    assert out.status == StoreError.exit_code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot put layer blob sha256:" in errors[0], out.stderr
    assert "Operation not permitted" in errors[0]
    assert set(blobs.iterdir()) == before
    check = store("fsck", check=False)
    assert check.status == 0, check.stdout + check.stderr
    assert list((store.root / "tmp").iterdir()) == []  # the temp blob went with the failure
    # Nothing names what failed: the same build again makes every layer and succeeds.
    store("build", "-t", "app", context)
    assert store("fsck").status == 0
