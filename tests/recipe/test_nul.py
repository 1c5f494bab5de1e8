"""A NUL byte in an instruction is a recipe error (exit 3) at typing time, or at resolve time
when a variable brought it; it used to reach the sandbox (exit 8). Issue 11, item 17."""

from __future__ import annotations

import pytest

from builder.errors import RecipeError
from builder.recipe import load, resolve

MESSAGE = "a NUL byte cannot be part of an instruction"


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("RUN echo a\0b", 11),
        ('RUN ["echo", "a\\u0000b"]', 1),  # JSON's escape: not on the line as a NUL
        ("ENV a=b\0c", 8),
        ("ENV a\0 b", 6),
        ("LABEL a=b\0c", 10),
        ("WORKDIR /a\0", 11),
        ("COPY --chown=a\0 x /y", 15),
        ("RUN --mount=type=tmpfs,target=/a\0 true", 33),
        ("CMD a\0", 6),
        ("ONBUILD RUN a\0b", 14),
        ("RUN <<EOF\na\0b\nEOF", 1),  # the body is the script: the caret on the instruction
    ],
)
def test_a_nul_in_an_instruction_is_refused_when_it_is_typed(line: str, column: int) -> None:
    text = f"FROM scratch\n{line}\n"
    with pytest.raises(RecipeError) as info:
        load(text)
    err = info.value
    assert err.exit_code == 3
    assert err.location is not None and (err.location.line, err.location.column) == (2, column)
    assert f"{line.split()[0]}: {MESSAGE}" in str(err)
    assert "\0" not in err.render()  # shown escaped, as \x00


def test_a_copy_heredoc_body_may_hold_a_nul_it_is_file_content() -> None:
    (_, copy) = load("FROM scratch\nCOPY <<EOF /x\na\0b\nEOF\n").instructions
    assert resolve(copy, {}, "\\").heredocs[0].content == "a\0b\n"


@pytest.mark.parametrize(
    "line",
    [
        "ENV a=$X",
        "LABEL a=${X}",
        "WORKDIR /$X",
        "COPY $X /y",
        "RUN --mount=type=tmpfs,target=$X true",
    ],
)
def test_a_nul_from_a_variable_is_refused_when_it_is_resolved(line: str) -> None:
    recipe = load(f"FROM scratch\nARG X\n{line}\n")
    instr = recipe.instructions[-1]
    with pytest.raises(RecipeError) as info:
        resolve(instr, {"X": "a\0b"}, recipe.escape)
    assert str(info.value).startswith(f"Dockerfile:3:1: {line.split()[0]}: {MESSAGE}")
