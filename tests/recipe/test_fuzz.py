"""The long fuzz run: whatever the text, parse_syntax returns a tree or raises RecipeError,
and so do the stages above it (typed instructions, the stage plan, resolving each
instruction against an empty scope, lint): nothing but a RecipeError ever escapes.
Hostile input too: random bytes (as the reader decodes them, and as raw bytes), lines of
hundreds of KB, and constructs nested thousands deep.

Excluded from the normal run (`-m "not fuzz"`); `make fuzz` runs it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError
from builder.recipe import load, plan, resolve
from builder.recipe.dump import dump, to_json
from builder.recipe.lint import lint
from builder.recipe.source import recipe_text
from builder.recipe.syntax import parse_syntax
from builder.recipe.typed import KNOWN

pytestmark = pytest.mark.fuzz

PIECES = st.sampled_from(
    [
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "ONBUILD",
        "ENV",
        "LABEL",
        "ARG",
        "HEALTHCHECK",
        "CMD",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\\",
        "`",
        "--",
        "--x=",
        "<<",
        "<<-",
        "3<<",
        "EOF",
        "'",
        '"',
        "[",
        "]",
        ",",
        "=",
        "#",
        "# escape=`\n",
        "# syntax=x\n",
        "\ufeff",
        "\x00",
        "\x85",
        "\xa0",
        "\u3000",
        "é",
        "\udcff",
        "\ud800",
        "$",
        "{",
        "}",
        "1e400",
        "NaN",
        "null",
    ]
)
RECIPE_LIKE = st.lists(PIECES, max_size=40).map("".join)


def _check(text: str) -> None:
    try:
        tree = parse_syntax(text)
    except RecipeError as err:
        assert err.location is not None
        return
    dump(tree)
    to_json(tree)
    _check_meaning(text)


def _check_meaning(text: str) -> None:
    try:
        recipe = load(text)
        for instr in recipe.instructions:
            resolve(instr, {}, recipe.escape)
        lint(recipe, {})
        plan(recipe, {})
    except RecipeError as err:
        assert str(err)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_recipe_error(text: str) -> None:
    _check(text)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(RECIPE_LIKE)
def test_recipe_like_text_parses_or_raises_recipe_error(text: str) -> None:
    _check(text)


# Every instruction the typed layer knows, plus nested, staged and misspelt forms.
KEYWORDS = st.sampled_from([*KNOWN, "ONBUILD RUN", "ONBUILD COPY", "FROM scratch AS", "COPPY"])
FLAGS = st.sampled_from(
    [
        "",
        "--from=a ",
        "--from=0 ",
        "--chown=1:1 ",
        "--chmod=755 ",
        "--chmod=$M ",
        "--link ",
        "--link=maybe ",
        "--platform=linux/amd64 ",
        "--mount=type=cache,target=/x ",
        "--mount=from=$S,target=/y ",
        "--network=none ",
        "--interval=5s ",
        "--retries=x ",
        "--timeout ",
        "--exclude=*.md ",
        "--checksum=sha256:00 ",
        "--unknown=1 ",
    ]
)
ARGS = st.lists(
    st.sampled_from(
        [
            "a",
            "b=c",
            "$X",
            "${X:-d}",
            "${X:?e}",
            "${X/a/b}",
            "'q w'",
            '"q w"',
            '["x", "y"]',
            "<<EOF",
            "80/tcp",
            "/dst/",
            "*.txt",
            "\\",
            "=",
            "a b",
        ]
    ),
    min_size=2,
    max_size=4,
).map(" ".join)
# Most lines valid-ish (no flag, two or more words), so the stages past parsing get work.
INSTRUCTION = st.tuples(KEYWORDS, st.one_of(st.just(""), st.just(""), FLAGS), ARGS).map(
    lambda t: f"{t[0]} {t[1]}{t[2]}"
)
STRUCTURED = st.lists(INSTRUCTION, min_size=1, max_size=3).map(
    lambda lines: (
        "ARG X=1\nFROM scratch\n"
        + "".join(f"{line}\nEOF\n" if "<<EOF" in line else f"{line}\n" for line in lines)
    )
)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(STRUCTURED)
def test_structured_recipes_type_or_raise_recipe_error(text: str) -> None:
    """Mostly well-formed lines, so that the typed layer, resolve, plan and lint see them."""
    _check(text)


# --- hostile input ----------------------------------------------------------------------


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_or_parsed_never_raised_otherwise(raw: bytes) -> None:
    try:
        text = recipe_text(raw, "Dockerfile")  # what build and lint do with a file's bytes
    except RecipeError as err:
        assert err.location is not None  # invalid UTF-8, at its line and column
    else:
        _check(text)
    _check(raw.decode("utf-8", "surrogateescape"))  # the parser's own raw-byte paths


HOSTILE_PIECES = st.sampled_from(
    [
        "${a:-",
        "${a/",
        "${a:+",
        "}",
        "[",
        "]",
        '["',
        '",',
        "ONBUILD ",
        "<<E ",
        "\\\n",
        "\\",
        '"',
        "'",
        "--x=",
        "$",
        "x",
        " ",
        "\t",
        "=",
        "\x00",
        "\udca0",
        "\udc85",
    ]
)
HOSTILE_LINE = st.tuples(
    st.sampled_from(["RUN ", "ENV a=", "LABEL a=", "COPY ", "FROM ", "ONBUILD ", "ARG a="]),
    st.lists(HOSTILE_PIECES, min_size=1, max_size=4).map("".join),
    st.lists(HOSTILE_PIECES, max_size=4).map("".join),
)


@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(HOSTILE_LINE, st.integers(1, 3_000))
def test_constructs_nested_thousands_deep_raise_only_recipe_errors(
    line: tuple[str, str, str], times: int
) -> None:
    start, repeated, end = line
    _check(f"FROM a\n{start}{repeated * times}{end}\nE\n")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(HOSTILE_LINE, st.integers(50_000, 300_000))
def test_lines_of_hundreds_of_kb_raise_only_recipe_errors(
    line: tuple[str, str, str], size: int
) -> None:
    start, repeated, end = line
    _check(f"FROM a\n{start}{(repeated * (size // len(repeated)))}{end}\n")
