"""The one recipe reader of build and lint: a regular file, at most the limit, never more in
memory (issue 11, item 5: `build -f /dev/zero` grew until the OOM killer stopped it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.engine.recipefile import read_recipe_bytes
from builder.errors import RecipeError, UsageError
from builder.recipe.source import MAX_RECIPE_BYTES


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    recipe.write_bytes(b"FROM scratch\n" + b"#" * (MAX_RECIPE_BYTES - 13))
    assert len(read_recipe_bytes(recipe)) == MAX_RECIPE_BYTES


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
        (lambda p: os.mkfifo(p), "a FIFO"),  # refused without waiting for a writer
        (lambda p: p.mkdir(), "a directory"),
    ],
    ids=["device", "fifo", "directory"],
)
def test_what_is_not_a_regular_file_is_refused_unread(
    tmp_path: Path, make: object, kind: str
) -> None:
    path = tmp_path / "Dockerfile"
    make(path)  # type: ignore[operator]
    with pytest.raises(UsageError) as info:
        read_recipe_bytes(path)
    assert str(info.value) == f"{path} is {kind}, not a recipe (a recipe is a regular file)"


def test_a_file_over_the_limit_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    with recipe.open("wb") as out:
        out.truncate(1 << 40)  # 1 TiB, sparse: reading it would never end
    with pytest.raises(RecipeError) as info:
        read_recipe_bytes(recipe)
    assert str(info.value) == (
        "Dockerfile is 1048576.0 MiB: larger than a recipe may be (the limit is 4 MiB)"
    )


def test_a_missing_recipe_is_a_usage_error_with_the_callers_hint(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        read_recipe_bytes(tmp_path / "nope", "pass -f FILE")
    assert str(info.value) == f"no recipe at {tmp_path / 'nope'} (pass -f FILE)"


def test_an_unreadable_recipe_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("FROM scratch\n")
    with pytest.raises(UsageError) as info:
        read_recipe_bytes(tmp_path / "file" / "below-a-file")
    assert str(info.value).endswith("below-a-file: Not a directory")
