"""Output files and dirs: whole or not at all; symlinks followed, devices written in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.store.destination import output_dir, output_file


def test_a_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), output_file(out) as f:
        f.write(b"half")
        assert out.read_bytes() == b"old"  # nothing seen before the rename
        raise RuntimeError("the writer failed")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]  # no temp file left
    with output_file(out) as f:
        f.write(b"new")
    assert out.read_bytes() == b"new"
    assert (out.stat().st_mode & 0o777) == 0o644


def test_a_symlink_is_followed_and_a_fifo_written_in_place(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real")
    with output_file(tmp_path / "link") as f:
        f.write(b"new")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real").read_bytes() == b"new"
    with output_file(Path("/dev/null")) as f:
        f.write(b"gone")
    assert Path("/dev/null").is_char_device()


def test_a_missing_parent_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(UsageError, match="nope does not exist"),
        output_file(tmp_path / "nope" / "out.tar"),
    ):
        pass
    with pytest.raises(UsageError, match="is a directory"), output_file(tmp_path):
        pass


def test_a_dir_appears_whole_and_only_where_it_was_empty(tmp_path: Path) -> None:
    target = tmp_path / "root"
    with pytest.raises(RuntimeError), output_dir(target) as d:
        (d / "f").write_text("x")
        raise RuntimeError("the writer failed")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty dir is replaced
    with output_dir(target) as d:
        (d / "f").write_text("x")
    assert (target / "f").read_text() == "x"
    assert (target.stat().st_mode & 0o777) == 0o755
    with pytest.raises(UsageError, match="not empty"), output_dir(target):
        pass
    assert sorted(os.listdir(tmp_path)) == ["root"]
