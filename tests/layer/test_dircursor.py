"""tree.DirCursor: lookups in tree order cost a step each, and a step up through `..` is
taken only where it leads where the path does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.layer import tree
from builder.layer.tree import DirCursor

FOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # as the COPY writer's Dirs


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every os.open the cursor makes (counted, then done for real)."""
    seen: list[object] = []
    real = os.open

    def counting(path: object, *args: object, **kwargs: object) -> int:
        seen.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tree.os, "open", counting)
    yield seen


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _ident_of(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_a_chain_down_and_back_up_costs_a_step_a_level(tmp_path: Path, opens: list[object]) -> None:
    depth = 300
    (tmp_path / "/".join(["d"] * depth)).mkdir(parents=True)
    base = os.open(tmp_path, FOLLOW)
    cursor = DirCursor(base)
    try:
        for level in range(1, depth + 1):  # down, as a copy makes a chain
            cursor.goto(("d",) * level)
        for level in range(depth, 0, -1):  # and up, as the dirs' times are set after
            fd = cursor.goto(("d",) * level)
            assert _ident(fd) == _ident_of(tmp_path / "/".join(["d"] * level))
    finally:
        cursor.close()
        os.close(base)
    # From the top each time would be depth² = 90,000 opens.
    assert len(opens) <= 4 * depth


def test_a_missing_dir_leaves_the_cursor_where_it_got(tmp_path: Path, opens: list[object]) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    base = os.open(tmp_path, FOLLOW)
    cursor = DirCursor(base)
    try:
        cursor.goto(("a", "b"))
        with pytest.raises(FileNotFoundError):
            cursor.goto(("a", "b", "c"))
        before = len(opens)

        def make(parent: int, name: str | bytes, depth: int) -> int:
            os.mkdir(name, dir_fd=parent)
            return os.open(name, FOLLOW, dir_fd=parent)

        fd = cursor.goto(("a", "b", "c"), make)
        assert _ident(fd) == _ident_of(tmp_path / "a" / "b" / "c")
        assert len(opens) - before == 2  # the failed one again (now made), then c
    finally:
        cursor.close()
        os.close(base)


def test_the_way_up_past_a_followed_symlink_is_the_paths(tmp_path: Path) -> None:
    # p/q/a/link -> ../../../real: `..` of what it leads to is not p/q/a.
    (tmp_path / "real" / "y").mkdir(parents=True)
    (tmp_path / "p" / "q" / "a" / "w").mkdir(parents=True)
    (tmp_path / "w").mkdir()  # where a `..` taken on trust would lead
    (tmp_path / "p" / "q" / "a" / "link").symlink_to("../../../real")
    base = os.open(tmp_path, FOLLOW)
    cursor = DirCursor(base, FOLLOW)
    try:
        fd = cursor.goto(("p", "q", "a", "link", "y"))
        assert _ident(fd) == _ident_of(tmp_path / "real" / "y")
        fd = cursor.goto(("p", "q", "a", "w"))
        assert _ident(fd) == _ident_of(tmp_path / "p" / "q" / "a" / "w")
    finally:
        cursor.close()
        os.close(base)


def test_no_symlink_is_followed_with_the_default_flags(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    base = os.open(tmp_path, FOLLOW)
    cursor = DirCursor(base)
    try:
        with pytest.raises(OSError):
            cursor.goto(("link",))
        assert _ident(cursor.goto(())) == _ident(base)
    finally:
        cursor.close()
        os.close(base)
