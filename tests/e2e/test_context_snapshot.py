"""A cached COPY whose digest came from the context's snapshot (engine/context.py) is the
COPY a full walk keys, through the real CLI: the same image while nothing changed, and a
rebuilt layer (the layer a --no-cache build makes of that tree) once a file changed in a way
only its content and ctime show, or once another tree with old ctimes took its place."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.engine.context import RACY_NS
from tests.e2e.support import Builder, make_context

RECIPE = 'FROM busybox\nCOPY . /app/\nCMD ["ls", "/app"]\n'
# Every mtime in a layer clamped to one time: two builds of one tree write one layer.
BUILD = ("build", "--source-date-epoch", "1600000000")


def _copy(stderr: str) -> str:
    """How the COPY (step 2 of 3) ended: CACHED or DONE."""
    (end,) = re.findall(r"^\[2/3\] (CACHED|DONE)", stderr, re.MULTILINE)
    return str(end)


def _snapshot(root: Path) -> dict[str, object]:
    (path,) = (root / "cache").glob("context-snapshot-*.json")
    value = json.loads(path.read_bytes())
    assert isinstance(value, dict)
    return value


def _diff_ids(builder: Builder, image: str) -> list[str]:
    (inspected,) = json.loads(builder("inspect", image).stdout)
    return list(inspected["Config"]["rootfs"]["diff_ids"])


def _edit(context: Path) -> None:
    """Same size, mtime put back: only the content and the ctime say that it changed (and
    the ctime is newer than the snapshot: the racy rule sees it)."""
    target = context / "sub" / "b.txt"
    st = target.stat()
    target.write_text("TWO\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap(context: Path) -> None:
    """Another tree of the same names and sizes, made before the snapshot, renamed in at
    the context's path (a checkout switched by `mv`): every ctime in it is old, so only
    the signature (inodes, mtimes) sees it."""
    context.rename(context.with_name("ctx.old"))
    context.with_name("other").rename(context)


@pytest.mark.parametrize("change", [_edit, _swap], ids=["edited", "swapped"])
def test_a_snapshot_keyed_copy_is_the_copy_a_full_walk_keys(
    builder: Builder, tmp_path: Path, change: Callable[[Path], None]
) -> None:
    context = make_context(tmp_path, RECIPE, {"a.txt": "one\n", "sub/b.txt": "two\n"})
    other = make_context(tmp_path / "o", RECIPE, {"a.txt": "one\n", "sub/b.txt": "TWO\n"})
    other.rename(tmp_path / "other")
    time.sleep(RACY_NS / 1e9 + 0.1)  # past the racy second, or no snapshot is trusted
    first = builder(*BUILD, "-q", "-t", "snap", context).stdout.strip()
    made, layers = _snapshot(builder.root), _diff_ids(builder, "snap")
    again = builder(*BUILD, "--progress", "plain", "-t", "snap", "--iidfile", tmp_path / "id",
                    context)  # fmt: skip
    assert _copy(again.stderr) == "CACHED", again.stderr
    assert (tmp_path / "id").read_text() == first
    assert _snapshot(builder.root) == made
    change(context)
    changed = builder(*BUILD, "--progress", "plain", "-t", "snap", context)
    assert _copy(changed.stderr) == "DONE", changed.stderr
    builder(*BUILD, "--no-cache", "-q", "-t", "full", context)
    # Layers, not image IDs: a --no-cache build's history has times of its own.
    assert _diff_ids(builder, "snap") == _diff_ids(builder, "full") != layers
