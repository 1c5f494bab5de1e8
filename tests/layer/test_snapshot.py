"""layer/snapshot: the copying snapshotter's copy of overlay-form layers and the upper dir
it makes from what changed (the CLI-level test compares its layers with overlayfs's)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from builder.layer import whiteout as wh
from builder.layer.snapshot import copied_root
from builder.layer.xattrs import read_xattrs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and chown need root")


def _layers(tmp_path: Path) -> tuple[Path, Path]:
    """Bottom: /a, /d/x, /d/y, /keep/k, /pair1 == /pair2 (one inode). Top (overlay form):
    /d opaque holding /d/z, /a whited out, /new."""
    bottom, top = tmp_path / "bottom", tmp_path / "top"
    for p in ("d", "keep"):
        (bottom / p).mkdir(parents=True)
    for p in ("a", "d/x", "d/y", "keep/k", "pair1"):
        (bottom / p).write_text(p)
    os.link(bottom / "pair1", bottom / "pair2")
    (top / "d").mkdir(parents=True)
    (top / "d" / "z").write_text("z")
    os.setxattr(top / "d", wh.OPAQUE_XATTR, b"y")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    wh.make_overlay_whiteout("a", fd)
    os.close(fd)
    (top / "new").write_text("new")
    return bottom, top


def _upper_and_work(tmp_path: Path) -> tuple[Path, Path]:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    return upper, work


def test_the_copy_is_the_merged_view_and_the_upper_dir_holds_only_the_changes(
    tmp_path: Path,
) -> None:
    bottom, top = _layers(tmp_path)
    upper, work = _upper_and_work(tmp_path)
    with copied_root([bottom, top], upper, work) as root:
        assert sorted(os.listdir(root)) == ["d", "keep", "new", "pair1", "pair2"]
        assert os.listdir(root / "d") == ["z"]  # opaque: x and y hidden
        assert os.stat(root / "pair1").st_nlink == 2  # the layer's hard link kept
        assert os.stat(root / "new").st_ino != os.stat(top / "new").st_ino  # a copy
        (root / "keep" / "k").write_text("changed")
        os.unlink(root / "pair2")
        os.chmod(root / "new", 0o600)
        os.rename(root / "d", root / "old")
        os.mkdir(root / "d")  # made where a dir was: opaque
        (root / "d" / "fresh").write_text("f")
    assert not (work / "merged").exists()
    assert (top / "new").stat().st_mode & 0o777 != 0o600  # the layer itself untouched
    found = {str(p.relative_to(upper)): p.lstat() for p in sorted(upper.rglob("*"))}
    assert set(found) == {"keep", "keep/k", "pair1", "pair2", "new", "d", "d/fresh", "old", "old/z"}
    assert wh.is_overlay_whiteout(found["pair2"])
    assert found["pair1"].st_nlink == 1 and (upper / "pair1").read_text() == "pair1"
    assert wh.is_overlay_opaque(read_xattrs(str(upper / "d")))
    assert not wh.is_overlay_opaque(read_xattrs(str(upper / "keep")))
    assert stat.S_IMODE(found["new"].st_mode) == 0o600
    assert (upper / "keep" / "k").read_text() == "changed"


def test_a_failed_run_leaves_the_upper_dir_alone(tmp_path: Path) -> None:
    bottom, top = _layers(tmp_path)
    upper, work = _upper_and_work(tmp_path)
    with pytest.raises(RuntimeError), copied_root([bottom, top], upper, work) as root:
        (root / "junk").write_text("j")
        raise RuntimeError
    assert list(upper.iterdir()) == [] and list(work.iterdir()) == []


def test_more_dirs_than_the_fd_limit_allows_are_pinned_and_the_limit_comes_back(
    tmp_path: Path,
) -> None:
    lower = tmp_path / "lower"
    for i in range(700):
        (lower / f"d{i}").mkdir(parents=True)
    upper, work = _upper_and_work(tmp_path)
    script = f"""
import os, resource, sys
from pathlib import Path
from builder.layer.snapshot import copied_root
resource.setrlimit(resource.RLIMIT_NOFILE, (400, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
with copied_root([Path({str(lower)!r})], Path({str(upper)!r}), Path({str(work)!r})) as root:
    inside = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    os.rmdir(root / "d5")
print(inside, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    inside, after = map(int, out.stdout.split())
    assert inside > 700 and after == 400
    assert [p.name for p in upper.iterdir()] == ["d5"] and wh.is_overlay_whiteout(
        (upper / "d5").lstat()
    )
