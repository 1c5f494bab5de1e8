"""A full disk: the store on a small tmpfs (mounted by the test, as root). Writing a RUN's
layer, importing and saving each give one `error:` line naming what was being written,
exit 6, and the store stays valid (oci-image-tool validates it, tmp/ is empty, it builds
again)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import Builder

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=True)


@pytest.fixture
def small_store(builder: Builder, small_fs: Path) -> Builder:
    """The test's busybox store, moved onto the 16 MB tmpfs."""
    root = small_fs / "store"
    shutil.copytree(builder.root, root, symlinks=True)
    return Builder(root)


def _assert_valid(builder: Builder) -> None:
    validate = ["oci-image-tool", "validate", "--type", "image", str(builder.root / "layout")]
    proc = subprocess.run(validate, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((builder.root / "tmp").iterdir()) == []
    assert "busybox" in builder("images").stdout


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize("after", ["", "ENV X=1\nRUN true\n"], ids=["last", "followed"])
def test_a_run_layer_that_does_not_fit(small_store: Builder, tmp_path: Path, after: str) -> None:
    """The error names the RUN whose layer did not fit, also when a later step or the
    stage's end finds it (a RUN's layer is written while the next steps run)."""
    context = tmp_path / "ctx"
    context.mkdir()
    # 9 MB in the upper dir fit; 9 MB more of (incompressible) layer blob do not.
    recipe = "FROM busybox\nRUN head -c 9000000 /dev/urandom > /big\n" + after
    (context / "Dockerfile").write_text(recipe)
    failed = small_store("build", "-t", "big", context, check=False)
    assert failed.status == 6
    line = _one_error_line(failed.stderr)
    assert line.startswith("error: Dockerfile:2: RUN head -c 9000000")
    assert "no space left on device while writing a layer blob" in line
    _assert_valid(small_store)
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo small > /small\n")
    small_store("build", "-t", "small", context)  # the store still works


def test_an_import_that_does_not_fit(small_store: Builder, tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "big").write_bytes(os.urandom(20_000_000))
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add(tmp_path / "rootfs", arcname=".")
    failed = small_store("import", tmp_path / "rootfs.tar", "big", check=False)
    assert failed.status == 6
    line = _one_error_line(failed.stderr)
    assert "no space left on device while writing the import of rootfs.tar" in line
    _assert_valid(small_store)


def test_a_save_that_does_not_fit(builder: Builder, small_fs: Path) -> None:
    (small_fs / "filler").write_bytes(b"\0" * (16 * 2**20 - 300_000))
    failed = builder("save", "-o", small_fs / "busybox.tar", "busybox", check=False)
    assert failed.status == 6
    line = _one_error_line(failed.stderr)
    assert f"no space left on device while writing {small_fs / 'busybox.tar'}" in line
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]  # no partial file
    _assert_valid(builder)
