"""The mtimes COPY gives the directories it writes into, as docker build (20.10, BuildKit)
gives them. Checked against a live dockerd on this machine (bench/docker_peer.py) with
this very recipe: a destination dir that exists already, an existing dir below it, and a
parent the COPY adds entries to all take the time of the build (the kernel's, as entries
are created in them), as do the dirs the COPY creates; a parent it does not write into
keeps its own time; files keep the context's. So `COPY . /data/` into an existing /data
changes the layer's first header on every build, in docker's layers as in ours.

The incremental path (engine/relink) must not keep the previous version's dir times: the
second build's dirs carry its own time, as a --no-cache build's do.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

from tests.e2e.support import Builder, make_context

OLD_FILE = 1_600_000_000  # the context's files
KEEP = 1000  # the RUN's time for /keep (and /data, /keep/deep; 1500 for /data/sub)

RECIPE = """FROM busybox:latest
RUN mkdir -p /data /keep/deep && touch -d @1000 /data /keep /keep/deep \\
    && mkdir -p /data/sub && touch -d @1500 /data/sub
COPY . /data/
COPY a.txt /keep/deep/x/y/
COPY sub /newdir/
"""


def _entries(builder: Builder, tag: str) -> list[dict[str, tarfile.TarInfo]]:
    """Each layer's entries after the base's, by name (no trailing slash)."""
    (image,) = json.loads(builder("inspect", tag).stdout)
    layers = []
    for layer in image["Manifest"]["layers"][1:]:
        blob = builder.root / "layout" / "blobs" / "sha256" / layer["digest"].partition(":")[2]
        plain = subprocess.run(["zstd", "-dc", blob], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
            layers.append({m.name.rstrip("/"): m for m in tar.getmembers()})
    return layers


def _check(builder: Builder, tag: str, start: float) -> dict[str, int]:
    _run, copy_all, copy_deep, copy_new = _entries(builder, tag)
    now = int(start)
    # Written into: the build's time (not the 1000 / 1500 the RUN gave them).
    assert copy_all["data"].mtime >= now
    assert copy_all["data/sub"].mtime >= now
    assert copy_deep["keep/deep"].mtime >= now
    # Created by the COPY: the build's time.
    assert copy_deep["keep/deep/x"].mtime >= now and copy_deep["keep/deep/x/y"].mtime >= now
    assert copy_new["newdir"].mtime >= now
    # A parent not written into: its own time; files: the context's.
    assert copy_deep["keep"].mtime == KEEP
    assert copy_all["data/a.txt"].mtime == OLD_FILE
    assert copy_all["data/sub/b.txt"].mtime == OLD_FILE
    assert copy_deep["keep/deep/x/y/a.txt"].mtime == OLD_FILE
    return {name: copy_all[name].mtime for name in ("data", "data/sub")}


def _context(tmp_path: Path) -> Path:
    context = make_context(tmp_path, RECIPE, {"a.txt": "a\n", "sub/b.txt": "b\n"})
    for path in [context / "a.txt", context / "sub" / "b.txt", context / "Dockerfile"]:
        os.utime(path, (OLD_FILE, OLD_FILE))
    return context


def test_copy_gives_the_dirs_it_writes_into_the_builds_time_as_docker(
    builder: Builder, tmp_path: Path
) -> None:
    context = _context(tmp_path)
    start = time.time()
    builder("build", "-t", "app:1", context)
    first = _check(builder, "app:1", start)

    # A changed build (incremental: the unchanged files are linked) stamps its own time.
    time.sleep(1.1)
    (context / "sub" / "c.txt").write_text("c\n")
    again = time.time()
    builder("build", "-t", "app:2", context)
    second = _check(builder, "app:2", again)
    assert all(second[name] > first[name] for name in first)
    (image,) = json.loads(builder("inspect", "app:2").stdout)
    unpacked = builder.root / "layers" / image["Config"]["rootfs"]["diff_ids"][2].partition(":")[2]
    assert (unpacked / "data" / "a.txt").stat().st_nlink == 2  # it was incremental
