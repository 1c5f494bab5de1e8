"""Lint findings on recipes built from hand-made Nodes."""

from __future__ import annotations

from builder.recipe.instructions import Recipe
from builder.recipe.lint import Finding, lint
from builder.recipe.tree import Directives, Node, SyntaxTree
from builder.recipe.typed import to_instructions


def recipe(*lines: tuple[str, ...], json_lines: frozenset[int] = frozenset()) -> Recipe:
    nodes = []
    for number, (cmd, *words) in enumerate(lines, 1):
        text = " ".join((cmd, *words))
        nodes.append(
            Node(
                cmd=cmd.upper(),
                sub_cmd=None,
                json=number in json_lines,
                original=text,
                start_line=number,
                end_line=number,
                flags=tuple(w for w in words if w.startswith("--")),
                value=tuple(w for w in words if not w.startswith("--")),
                source_line=text,
            )
        )
    return Recipe(
        "Dockerfile", "\\", to_instructions(SyntaxTree("Dockerfile", Directives(), tuple(nodes)))
    )


def rules(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.rule, f.location.line) for f in findings]


def test_clean_recipe_has_no_findings() -> None:
    r = recipe(
        ("ARG", "BASE=busybox:1.36"),
        ("FROM", "$BASE", "AS", "build"),
        ("ARG", "V=1"),
        ("ENV", "A", "$V", "="),
        ("WORKDIR", "/src/$A/$PATH"),
        ("FROM", "scratch"),
        ("COPY", "--from=build", "/src", "/"),
        ("CMD", "/app"),
        json_lines=frozenset({8}),
    )
    assert lint(r, {"V": "2"}) == []


def test_warnings() -> None:
    r = recipe(
        ("FROM", "busybox", "as", "Build"),
        ("MAINTAINER", "me"),
        ("CMD", "run it"),
        ("CMD", "again"),
        ("ARG", "DECLARED"),
        ("WORKDIR", "/$NOPE/$DECLARED/${ALSO:-x}"),
        ("FROM", "build"),
        ("ENTRYPOINT", "x"),
        json_lines=frozenset({8}),
    )
    found = rules(lint(r, {"UNUSED": "1"}))
    assert found == [
        ("FromAsCasing", 1),
        ("PinnedBaseImage", 1),
        ("StageNameCasing", 1),
        ("UnusedBuildArgs", 1),
        ("MaintainerDeprecated", 2),
        ("JSONArgsRecommended", 3),
        ("MultipleInstructionsDisallowed", 3),
        ("JSONArgsRecommended", 4),
        ("UndefinedVar", 6),
        ("UndefinedVar", 6),
    ]
    messages = [f.message for f in lint(r, {}) if f.rule == "UndefinedVar"]
    assert messages == [
        "Usage of undefined variable '$ALSO'",
        "Usage of undefined variable '$NOPE'",
    ]


def test_latest_tag_and_digest() -> None:
    assert rules(lint(recipe(("FROM", "img:latest")), {})) == [("PinnedBaseImage", 1)]
    assert lint(recipe(("FROM", "img@sha256:" + "0" * 64)), {}) == []
    assert lint(recipe(("FROM", "registry:5000/img:1")), {}) == []
    assert rules(lint(recipe(("FROM", "registry:5000/img")), {})) == [("PinnedBaseImage", 1)]


def test_undefined_in_from() -> None:
    found = lint(recipe(("FROM", "img:${TAG:-1}")), {})
    assert rules(found) == [("UndefinedArgInFrom", 1)]


def test_plan_errors_become_findings() -> None:
    found = lint(recipe(("RUN", "x"), ("FROM", "a:1")), {})
    assert [(f.severity, f.rule, f.location.line) for f in found] == [("error", "InvalidRecipe", 1)]
    bad = lint(recipe(("FROM", "a:1"), ("WORKDIR", "${X")), {})
    assert [(f.severity, f.location.line) for f in bad] == [("error", 2)]


def test_an_expanded_value_is_checked_with_what_lint_knows() -> None:
    bad = recipe(("FROM", "a:1"), ("ARG", "MODE=99"), ("COPY", "--chmod=$MODE", "x", "/y"))
    (found,) = lint(bad, {})
    assert (found.severity, found.location.line, found.location.column) == ("error", 3, 6)
    assert found.error is not None and found.error.message == found.message
    assert found.message.startswith("invalid chmod parameter: '99'")
    assert lint(bad, {"MODE": "0644"}) == []


def test_a_value_from_the_base_images_env_is_not_judged() -> None:
    # MODE may come from the base image's ENV, which lint cannot read: only a warning.
    external = recipe(("FROM", "a:1"), ("COPY", "--chmod=${MODE}9", "x", "/y"))
    assert rules(lint(external, {})) == [("UndefinedVar", 2)]
    # On scratch nothing can set it: build would fail the same way, so lint does too.
    scratch = recipe(("FROM", "scratch"), ("COPY", "--chmod=${MODE}9", "x", "/y"))
    assert [f.rule for f in lint(scratch, {})] == ["InvalidRecipe"]


def test_an_arg_default_is_not_read_when_a_build_arg_gives_the_value() -> None:
    r = recipe(("FROM", "a:1"), ("ARG", "A=${UNSET:?boom}"), ("RUN", "echo $A"))
    assert lint(r, {"A": "1"}) == []  # as the build: no error
    assert [f.severity for f in lint(r, {})] == ["error"]


def test_scratch_has_a_path() -> None:
    r = recipe(("FROM", "scratch"), ("USER", "$PATH"))
    assert lint(r, {}) == []
