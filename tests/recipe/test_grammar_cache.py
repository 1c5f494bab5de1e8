"""The compiled grammar kept on disk (recipe/syntax.py, Lark's `cache=`): a hit parses as a
fresh compile does, and a stale or damaged entry is a miss that is written again, never a
crash, a message, or another parser."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.recipe import syntax
from builder.recipe.dump import to_json

RECIPE = """FROM busybox AS base
RUN --mount=type=cache,target=/c echo "hi" \\
  there
COPY --chmod=644 a b /dst/
ENV A=1 B="two words"
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "recipe.lark.cache"
    monkeypatch.setattr(syntax, "GRAMMAR_CACHE", path)
    syntax._parser.cache_clear()
    yield path
    syntax._parser.cache_clear()  # the next test's parser is the package's again


def _parse_anew() -> list[dict[str, Any]]:
    """The recipe parsed by a parser loaded as a new process would (no memo)."""
    syntax._parser.cache_clear()
    return to_json(syntax.parse_syntax(RECIPE))


def test_a_hit_parses_as_a_compile_does(cache: Path) -> None:
    compiled = _parse_anew()  # a miss: compiled and written
    written = cache.read_bytes()
    assert written
    assert _parse_anew() == compiled  # a hit
    assert cache.read_bytes() == written  # read, not written again


def _stale(data: bytes) -> bytes:
    """The entry of another grammar (its hash line) with this one's tables."""
    return b"0" * 64 + data[data.index(b"\n") :]


def _other_tables(data: bytes) -> bytes:
    """A well-formed entry whose pickles hold something else than a parser."""
    return data[: data.index(b"\n") + 1] + pickle.dumps({}) + pickle.dumps({"x": 1})


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: bytes(range(256)) * 4,
    "stale": _stale,
    "other tables": _other_tables,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_stale_or_damaged_entry_is_a_miss_and_is_written_again(
    cache: Path, damage: str, capfd: pytest.CaptureFixture[str]
) -> None:
    expected = _parse_anew()
    good = cache.read_bytes()
    cache.write_bytes(DAMAGE[damage](good))
    assert _parse_anew() == expected
    assert capfd.readouterr() == ("", "")  # Lark's complaint stays in its silent logger
    assert cache.read_bytes()[:64] == good[:64]  # written again for this grammar
    assert _parse_anew() == expected


def test_an_unwritable_cache_still_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a dir")
    monkeypatch.setattr(syntax, "GRAMMAR_CACHE", blocked / "recipe.lark.cache")
    syntax._parser.cache_clear()
    try:
        assert _parse_anew()[0]["original"] == "FROM busybox AS base"
    finally:
        syntax._parser.cache_clear()
