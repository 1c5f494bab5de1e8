"""The long fuzz run: whatever the text, parse_syntax returns a tree or raises RecipeError.

Excluded from the normal run (`-m "not fuzz"`); `make fuzz` runs it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError
from builder.recipe.dump import dump, to_json
from builder.recipe.syntax import parse_syntax

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


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_recipe_error(text: str) -> None:
    _check(text)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(RECIPE_LIKE)
def test_recipe_like_text_parses_or_raises_recipe_error(text: str) -> None:
    _check(text)
