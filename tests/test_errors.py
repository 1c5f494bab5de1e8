"""How a recipe error is shown: the recipe's bytes escaped and a huge line clipped, so that
garbage in gives one readable `error:` line and its caret (issue 11, item 16)."""

from __future__ import annotations

from builder.errors import RecipeError, SourceLocation


def _render(message: str, line: str, column: int) -> list[str]:
    err = RecipeError(message, SourceLocation("Dockerfile", 2, column, line))
    return err.render().split("\n")


def test_control_characters_are_escaped_and_the_caret_stays_under_its_column() -> None:
    first, shown, caret = _render("bad \x1b[31m", "ENV a=\x1b[31m\0b", 12)
    assert first == "Dockerfile:2:12: bad \\x1b[31m"
    assert shown == "   2 | ENV a=\\x1b[31m\\x00b"
    assert caret.index("^") == shown.index("\\x00")


def test_line_breaks_other_than_newline_do_not_split_the_error() -> None:
    # str.splitlines() (and terminals) break at these; the error must stay three lines.
    lines = _render("word \x85 \u2028 \r", "LABEL a=\x0b\x0c\x1c\x85\u2028\r", 1)
    assert len("\n".join(lines).splitlines()) == 3


def test_tabs_stay_tabs_and_the_caret_lines_up_under_them() -> None:
    _, shown, caret = _render("m", "\tLABEL\tx=y", 8)
    assert shown == "   2 | \tLABEL\tx=y"
    assert caret == "       \t     \t^"


def test_a_huge_line_is_clipped_around_the_caret() -> None:
    line = "LABEL a=" + "x" * 1_000_000 + "!" + "y" * 1_000_000
    first, shown, caret = _render("huge " + "w" * 1_000_000, line, 1_000_009)
    assert len(first) < 500 and first.startswith("Dockerfile:2:1000009: huge ")
    assert len(shown) < 200 and shown.startswith("   2 | …x") and shown.endswith("y…")
    assert shown[caret.index("^")] == "!"


def test_a_short_printable_error_is_shown_as_before() -> None:
    assert _render("unknown instruction: COPPY", "COPPY a b", 1) == [
        "Dockerfile:2:1: unknown instruction: COPPY",
        "   2 | COPPY a b",
        "       ^",
    ]
