"""walk_listings: one listing per directory, entries stat'ed by the caller on the dir's fd."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from builder.layer.tree import walk_listings


def _tree(top: Path) -> None:
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "deep.txt").write_text("deep")
    (top / "a" / "f").write_text("f")
    (top / "top.txt").write_text("top")
    os.symlink("a", top / "link")  # a link to a dir is listed, never entered
    os.mkdir(os.fsencode(top) + b"/bad-\xff")  # a name that is not UTF-8
    (top / "empty").mkdir()


def test_every_entry_once_with_its_lstat_on_the_dirs_fd(tmp_path: Path) -> None:
    _tree(tmp_path)
    seen: dict[str, os.stat_result] = {}
    dirs = []
    for fd, prefix, listing in walk_listings(tmp_path):
        dirs.append(prefix)
        for entry in listing:
            seen[prefix + entry.name] = entry.stat(follow_symlinks=False)
            # The fd is the listed directory's own.
            assert os.lstat(entry.name, dir_fd=fd).st_ino == seen[prefix + entry.name].st_ino
    expected = {
        os.fsdecode(os.path.relpath(os.path.join(d, n), os.fsencode(tmp_path)))
        for d, subdirs, files in os.walk(os.fsencode(tmp_path))
        for n in subdirs + files
    }
    assert set(seen) == expected
    assert "bad-\udcff" in seen  # surrogate-escaped, as os.fsdecode gives it
    assert sorted(dirs) == ["", "a/", "a/b/", "bad-\udcff/", "empty/"]  # parents first
    assert dirs.index("a/") < dirs.index("a/b/")
    for rel, st in seen.items():
        assert st.st_ino == os.lstat(os.fsencode(tmp_path) + b"/" + os.fsencode(rel)).st_ino


def test_a_directory_moved_out_while_walked_raises(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    walker = walk_listings(top)
    for _fd, prefix, _listing in walker:
        if prefix == "a/":  # inside a: move it out of the tree, then finish the walk
            (top / "a").rename(tmp_path / "moved")
            break
    with pytest.raises(OSError) as raised:
        list(walker)
    assert raised.value.errno == errno.ESTALE


def test_the_fd_is_closed_when_the_walk_is(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = set(os.listdir("/proc/self/fd"))
    walker = walk_listings(tmp_path)
    next(walker)
    next(walker)
    walker.close()
    assert set(os.listdir("/proc/self/fd")) == before
