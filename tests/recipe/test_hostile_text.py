"""Hostile recipe text at the recipe layer: whatever the text, a tree or a RecipeError with a
location, never Lark's exceptions or a RecursionError (issue 11, items 15 and 16)."""

from __future__ import annotations

import pytest
from lark.exceptions import LarkError

from builder.errors import RecipeError
from builder.recipe import load, resolve, syntax
from builder.recipe.expand import MAX_NESTING, expand_word
from builder.recipe.lint import lint
from builder.recipe.syntax import parse_syntax


def _nested(depth: int) -> str:
    return "${a:-" * depth + "z" + "}" * depth


def _resolve_all(text: str) -> None:
    recipe = load(text)
    for instr in recipe.instructions:
        resolve(instr, {}, recipe.escape)


@pytest.mark.parametrize("byte", ["\udca0", "\udc85"])
def test_a_line_starting_with_a_raw_blank_byte_is_read_as_its_keyword(byte: str) -> None:
    # The flag scanner counts 0xA0 and 0x85 as blanks; TrimSpace, which runs first, does
    # not. The grammar once lexed such a line as a REST token and Lark raised.
    tree = parse_syntax(f"FROM a\n{byte}abc --x y\n")
    assert (tree.nodes[1].cmd, tree.nodes[1].flags) == (f"{byte}ABC", ("--x",))
    with pytest.raises(RecipeError) as info:
        load(f"FROM a\n{byte}abc\n")
    assert str(info.value).startswith("Dockerfile:2:1: unknown instruction")


class _FakeLarkError(LarkError):
    line = 2  # as Lark's Unexpected* errors carry it: 1-based in the text it was given


class _FailingParser:
    def parse(self, text: str, start: str) -> object:
        raise _FakeLarkError("no")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("FROM a\n\nRUN x\nRUN y\n", 3),  # the second line given to the grammar, line 3
        ("\nRUN x <<EOF\nhi\nEOF\n", 2),  # a heredoc line is read on its own
    ],
)
def test_an_error_of_the_grammar_is_a_recipe_error_at_its_line(
    monkeypatch: pytest.MonkeyPatch, text: str, line: int
) -> None:
    monkeypatch.setattr(syntax, "_parser", lambda: _FailingParser())
    with pytest.raises(RecipeError) as info:
        parse_syntax(text)
    assert str(info.value).startswith(
        f"Dockerfile:{line}:1: this line cannot be read as an instruction"
    )


@pytest.mark.parametrize("depth", [3, 2000])
def test_an_onbuild_chain_is_refused_without_recursing_through_it(depth: int) -> None:
    with pytest.raises(RecipeError) as info:
        parse_syntax("FROM a\n" + "ONBUILD " * depth + "RUN <<EOF\nx\nEOF\n")
    assert "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed" in str(info.value)


def test_onbuild_onbuild_parses_as_in_buildkit_and_typing_refuses_it() -> None:
    node = parse_syntax("FROM a\nONBUILD ONBUILD RUN x\n").nodes[1]
    assert node.inner is not None and node.inner.inner is not None
    assert node.inner.inner.cmd == "RUN"
    with pytest.raises(RecipeError, match="Chaining ONBUILD"):
        load("FROM a\nONBUILD ONBUILD RUN x\n")


def test_nesting_up_to_the_limit_expands() -> None:
    assert expand_word(_nested(MAX_NESTING), {}) == "z"
    assert expand_word(_nested(MAX_NESTING), {"a": "set"}) == "set"


@pytest.mark.parametrize(
    "line",
    [
        f"ENV x={_nested(400)}",
        "ENV x=" + '"${a:-' * 400 + "z" + '}"' * 400,
        f"ENV x={'${a/' * 400}z{'}' * 400}",
        f"COPY {_nested(400)} /dst/",
    ],
    ids=["default", "quoted", "replace", "copy"],
)
def test_nesting_past_the_limit_is_a_recipe_error_at_the_instruction(line: str) -> None:
    text = f"FROM scratch\n{line}\n"
    with pytest.raises(RecipeError) as info:
        _resolve_all(text)
    assert str(info.value).startswith(f"Dockerfile:2:1: {line.split()[0]}: ")
    assert f"nested deeper than {MAX_NESTING} levels" in str(info.value)
    (finding,) = lint(load(text), {})  # lint says the same
    assert finding.error is not None and str(finding.error) == str(info.value)


def test_nesting_in_a_from_line_is_refused_when_the_plan_expands_it() -> None:
    with pytest.raises(RecipeError, match="nested deeper"):
        _resolve_all(f"ARG a\nFROM {_nested(400)}\n")


def test_deeply_nested_json_is_the_shell_form_not_a_recursion_error() -> None:
    node = parse_syntax("FROM a\nRUN " + "[" * 100_000 + "]" * 100_000 + "\n").nodes[1]
    assert not node.json


def test_thousands_of_heredocs_on_one_line_are_read_one_after_the_other() -> None:
    count = 5000
    text = "FROM a\nRUN " + " ".join(f"<<E{i}" for i in range(count)) + "\n"
    text += "".join(f"body {i}\nE{i}\n" for i in range(count))
    (_, run) = parse_syntax(text).nodes
    assert len(run.heredocs) == count
    assert run.heredocs[-1].content == f"body {count - 1}\n"
