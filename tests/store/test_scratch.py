"""tmp/: entries carry their maker's pid; a sweep removes only what dead processes left."""

from __future__ import annotations

import os
from pathlib import Path

from builder.store.scratch import Scratch


def test_sweep_removes_only_dead_processes_leftovers(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    live = scratch.new_dir("upper")
    assert f"-{os.getpid()}-" in live.name
    (live / "f").write_bytes(b"12345")
    dead = tmp_path / "upper-999999999-abc"  # a pid that cannot be alive
    dead.mkdir()
    (dead / "f").write_bytes(b"123")
    nameless = tmp_path / "junk"
    nameless.write_bytes(b"1")
    assert scratch.sweep() >= 4
    assert sorted(tmp_path.iterdir()) == [live]


def test_new_name_is_free_and_ours(tmp_path: Path) -> None:
    path = Scratch(tmp_path).new_name("blob")
    assert path.parent == tmp_path and not path.exists()
    assert path.name.startswith(f"blob-{os.getpid()}-")
