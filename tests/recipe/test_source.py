"""A recipe's bytes to its text: the size limit and UTF-8, with the place of the first bad
byte (issue 11, items 5 and 16)."""

from __future__ import annotations

import pytest

from builder.errors import RecipeError
from builder.recipe.source import MAX_RECIPE_BYTES, recipe_text


def test_a_recipe_at_the_limit_is_read() -> None:
    raw = b"FROM scratch\n" + b"#" * (MAX_RECIPE_BYTES - 13)
    assert len(recipe_text(raw, "Dockerfile")) == MAX_RECIPE_BYTES


def test_one_byte_over_the_limit_is_refused() -> None:
    with pytest.raises(RecipeError) as info:
        recipe_text(b"#" * (MAX_RECIPE_BYTES + 1), "Dockerfile")
    assert "Dockerfile is larger than a recipe may be" in str(info.value)
    assert "the limit is 4 MiB" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "line", "column", "byte"),
    [
        (b"FROM scratch\nRUN echo \xff\n", 2, 10, 0xFF),
        (b"\x85abc\n", 1, 1, 0x85),
        (b"FROM scratch\nLABEL a=\xc3", 2, 9, 0xC3),  # cut inside a character, at the end
        (b"FROM scratch\nLABEL \xc3\xa9t\xc3\xa9=\xed\xa0\x80\n", 2, 11, 0xED),  # a surrogate
    ],
)
def test_invalid_utf8_is_refused_at_its_line_and_column(
    raw: bytes, line: int, column: int, byte: int
) -> None:
    with pytest.raises(RecipeError) as info:
        recipe_text(raw, "Dockerfile")
    err = info.value
    assert err.location is not None
    assert (err.location.line, err.location.column) == (line, column)
    assert f"invalid UTF-8: byte 0x{byte:02x}" in str(err)
    assert err.render().splitlines()[-1].endswith("^")


def test_utf8_text_is_returned_as_it_is() -> None:
    text = "FROM scratch\nLABEL é=日本\n"
    assert recipe_text(text.encode(), "Dockerfile") == text
