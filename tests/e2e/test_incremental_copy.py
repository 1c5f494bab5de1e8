"""An incremental COPY layer (unchanged files hardlinked to the previous layer, unchanged
frames of its blob reused) is byte for byte the layer a `--no-cache` build writes for the
same tree: the same blob digest and diff_id, in both compressions, after files were added,
removed, changed, renamed and chmodded. Through the real CLI, sandbox and store; the blobs
are read back by the real zstd, gzip and GNU tar.

Every build runs under SOURCE_DATE_EPOCH, later than the context's own (old) mtimes, so the
dirs the COPY makes (which take the clock's time) are clamped and two full builds of one
tree agree; the files keep their mtimes, so a stale one would show.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.support import Builder, make_context

EPOCH = "1700000000"
OLD = 1_600_000_000  # the context's mtimes: older than the epoch, kept as they are
RECIPE = "FROM busybox:latest\nCOPY . /app/\n"


def _context(tmp_path: Path) -> Path:
    rng = random.Random(5)
    files: dict[str, str] = {}
    for d in range(6):
        for i in range(100):  # 600 deferred files: placed in two lanes (relink.LANES_FROM)
            files[f"src/d{d}/f{i}.txt"] = f"file {d}/{i}\n" + "x" * rng.randint(0, 3000)
    context = make_context(tmp_path, RECIPE, files)
    for b in range(3):  # several frames: each of these is past the 1 MiB minimum
        (context / "big").mkdir(exist_ok=True)
        (context / "big" / f"blob{b}.bin").write_bytes(rng.randbytes(1_500_000))
    (context / "changeme.txt").write_text("v1\n")
    (context / "gone.txt").write_text("removed later\n")
    (context / "old-name.txt").write_text("renamed later\n")
    (context / "tool.sh").write_text("#!/bin/sh\n")
    _age(context)
    return context


def _age(context: Path) -> None:
    for path in [context, *context.rglob("*")]:
        os.utime(path, (OLD, OLD), follow_symlinks=False)


def _edit(context: Path) -> None:
    """One of each kind of change; the directories' mtimes stay old too."""
    (context / "changeme.txt").write_text("v2, longer\n")
    (context / "src" / "d3" / "f7.txt").write_text("changed in the middle of a frame\n")
    (context / "gone.txt").unlink()
    (context / "new.txt").write_text("added\n")
    (context / "old-name.txt").rename(context / "src" / "new-name.txt")
    (context / "tool.sh").chmod(0o755)
    _age(context)


def _layer(store: Builder, name: str) -> tuple[str, str, Path]:
    """The image's last layer: blob digest, diff_id and its unpacked dir."""
    (image,) = json.loads(store("inspect", name).stdout)
    digest = image["Manifest"]["layers"][-1]["digest"]
    diff_id = image["Config"]["rootfs"]["diff_ids"][-1]
    return digest, diff_id, store.root / "layers" / diff_id.partition(":")[2]


def _blob(store: Builder, digest: str) -> Path:
    return store.root / "layout" / "blobs" / "sha256" / digest.partition(":")[2]


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_incremental_copy_layer_is_the_no_cache_layer(
    tmp_path: Path, busybox_store: Path, compression: str
) -> None:
    context = _context(tmp_path / "ctx")
    flags = ("--compression", compression, "--source-date-epoch", EPOCH)
    stores = {}
    for name in ("incremental", "full", "again"):
        stores[name] = Builder(tmp_path / name)
        shutil.copytree(busybox_store, stores[name].root, symlinks=True)
    incremental = stores["incremental"]

    incremental("build", *flags, "-t", "app:1", context)
    first_digest, _, first_dir = _layer(incremental, "app:1")
    _edit(context)
    incremental("build", *flags, "-t", "app:2", context)
    digest, diff_id, unpacked = _layer(incremental, "app:2")
    stores["full"]("build", "--no-cache", *flags, "-t", "app:2", context)
    stores["again"]("build", "--no-cache", *flags, "-t", "app:2", context)

    assert digest != first_digest
    # Byte-identical to what a full build writes (and two full builds agree: the test can
    # tell a clock or a stray byte).
    assert _layer(stores["full"], "app:2")[:2] == (digest, diff_id)
    assert _layer(stores["again"], "app:2")[:2] == (digest, diff_id)

    # It was incremental: an unchanged file is the previous layer's inode; what changed
    # (content, mode, name) is a file of its own.
    kept = unpacked / "app" / "big" / "blob1.bin"
    assert kept.stat().st_ino == (first_dir / "app" / "big" / "blob1.bin").stat().st_ino
    assert kept.stat().st_nlink == 2
    for d in range(6):  # every dir, whichever lane placed it
        assert (unpacked / "app" / "src" / f"d{d}" / "f9.txt").stat().st_nlink == 2
    for changed in ("changeme.txt", "tool.sh", "src/new-name.txt", "new.txt"):
        assert (unpacked / "app" / changed).stat().st_nlink == 1, changed
    assert (unpacked / "app" / "tool.sh").stat().st_mode & 0o777 == 0o755
    assert not (unpacked / "app" / "gone.txt").exists()
    # The shared inode kept its metadata (nothing chmodded or touched it through the link).
    assert kept.stat().st_mtime == OLD and kept.stat().st_mode & 0o7777 == 0o644

    # The real CLIs read the framed blob back as the tree.
    tool = {"zstd": ["zstd", "-dc"], "gzip": ["gzip", "-dc"]}[compression]
    blob = _blob(incremental, digest).read_bytes()
    plain = subprocess.run(tool, input=blob, capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(plain).hexdigest() == diff_id
    listing = subprocess.run(
        ["tar", "-tvf", "-"], input=plain, capture_output=True, check=True
    ).stdout.decode()
    assert "app/src/new-name.txt" in listing and "app/gone.txt" not in listing
    assert "-rwxr-xr-x" in next(line for line in listing.splitlines() if "app/tool.sh" in line)
