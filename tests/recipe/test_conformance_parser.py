"""BuildKit's own parser corpus (copied byte for byte into shared/conformance)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.recipe.dump import dump
from builder.recipe.syntax import parse_syntax
from tests.shared import shared_path

CORPUS = shared_path("conformance/buildkit-parser", module_level=True)


def _cases(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).iterdir() if p.is_dir())


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "surrogateescape")


def test_corpus_counts() -> None:
    assert len(_cases("positive")) == 33
    assert len(_cases("negative")) == 4


@pytest.mark.parametrize("case", _cases("positive"), ids=lambda p: p.name)
def test_positive_case_dumps_exactly(case: Path) -> None:
    tree = parse_syntax(_read(case / "Dockerfile"))
    assert dump(tree) == (case / "result").read_bytes().decode("utf-8")


@pytest.mark.parametrize("case", _cases("negative"), ids=lambda p: p.name)
def test_negative_case_raises(case: Path) -> None:
    with pytest.raises(RecipeError) as info:
        parse_syntax(_read(case / "Dockerfile"))
    assert info.value.location is not None


def test_line_numbers() -> None:
    tree = parse_syntax(_read(CORPUS / "extra" / "line-numbers" / "Dockerfile"))
    spans = [(n.cmd, n.start_line, n.end_line) for n in tree.nodes]
    assert spans == [("FROM", 5, 5), ("ENV", 11, 12), ("RUN", 17, 31)]
    assert tree.directives.escape == "\\"
