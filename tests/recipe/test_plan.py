"""The stage graph, from hand-built Nodes (the parser is another module's job)."""

from __future__ import annotations

import pytest

from builder.errors import RecipeError
from builder.recipe.instructions import Recipe
from builder.recipe.plan import plan
from builder.recipe.tree import Directives, Node, SyntaxTree
from builder.recipe.typed import to_instructions


def recipe(*lines: tuple[str, ...]) -> Recipe:
    """Each line is (CMD, *flags-and-values); words starting with `--` are flags."""
    nodes = []
    for number, (cmd, *words) in enumerate(lines, 1):
        text = " ".join((cmd, *words))
        nodes.append(
            Node(
                cmd=cmd,
                sub_cmd=None,
                json=False,
                original=text,
                start_line=number,
                end_line=number,
                flags=tuple(w for w in words if w.startswith("--")),
                value=tuple(w for w in words if not w.startswith("--")),
                source_line=text,
            )
        )
    tree = SyntaxTree("Dockerfile", Directives(), tuple(nodes))
    return Recipe("Dockerfile", "\\", to_instructions(tree))


MULTI = recipe(
    ("ARG", "BASE=busybox:1.36"),
    ("ARG", "TAG"),
    ("FROM", "${BASE}", "AS", "Build"),
    ("RUN", "make"),
    ("FROM", "build", "AS", "test"),
    ("FROM", "alpine:3.19", "AS", "tools"),
    ("FROM", "scratch"),
    ("COPY", "--from=build", "/out", "/out"),
    ("COPY", "--from=tools", "/t", "/t"),
)


def test_stages_and_bases() -> None:
    built = plan(MULTI, {})
    assert [s.name for s in built.stages] == ["build", "test", "tools", None]
    assert [s.base for s in built.stages] == ["busybox:1.36", "build", "alpine:3.19", "scratch"]
    assert built.stages[1].base_stage == 0
    assert built.stages[3].depends_on == {0, 2}
    assert built.target == 3
    assert built.needed == (0, 2, 3)
    assert built.global_args["BASE"] == "busybox:1.36"
    assert "TAG" not in built.global_args
    assert built.stages[0].instructions[0].keyword == "RUN"


def test_build_arg_overrides_global_and_target() -> None:
    built = plan(MULTI, {"BASE": "debian:12", "NOPE": "1"}, target="TEST")
    assert built.stages[0].base == "debian:12"
    assert built.target == 1
    assert built.needed == (0, 1)
    assert built.unused_build_args == ("NOPE",)


def test_unused_counts_only_needed_stages() -> None:
    r = recipe(("FROM", "a", "AS", "one"), ("ARG", "X"), ("FROM", "b"), ("ARG", "Y"))
    assert plan(r, {"X": "1", "Y": "2"}).unused_build_args == ("X",)
    assert plan(r, {"X": "1", "Y": "2"}, target="one").unused_build_args == ("Y",)
    assert plan(r, {"HTTP_PROXY": "p"}).unused_build_args == ()


def test_target_not_found_suggests() -> None:
    with pytest.raises(RecipeError) as info:
        plan(MULTI, {}, target="tols")
    assert "could not be found" in info.value.message
    assert info.value.hint == "did you mean tools?"


def test_copy_from_index_and_image() -> None:
    r = recipe(
        ("FROM", "a"),
        ("FROM", "b"),
        ("COPY", "--from=0", "x", "y"),
        ("COPY", "--from=nginx:1", "x", "y"),
    )
    assert plan(r, {}).stages[1].depends_on == {0}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        # BuildKit's words (convert_test.go TestDockerfileCircularDependencies)
        (
            (("FROM", "a", "AS", "stage0"), ("COPY", "--from=stage0", "s", "d")),
            "circular dependency detected on stage: stage0",
        ),
        (
            (("FROM", "a"), ("COPY", "--from=0", "s", "d"), ("FROM", "b")),
            "circular dependency detected on stage: stage-0",
        ),
        (
            (
                ("FROM", "a", "AS", "stage0"),
                ("COPY", "--from=stage2", "s", "d"),
                ("FROM", "a", "AS", "stage1"),
                ("COPY", "--from=stage0", "s", "d"),
                ("FROM", "a", "AS", "stage2"),
                ("COPY", "--from=STAGE1", "s", "d"),
            ),
            "circular dependency detected on stage: stage0",
        ),
        (
            (("FROM", "a"), ("COPY", "--from=later", "s", "d"), ("FROM", "b", "AS", "later")),
            'cannot copy from stage "later", it needs to be defined before current stage "stage-0"',
        ),
        (
            (("FROM", "a"), ("COPY", "--from=1", "s", "d"), ("FROM", "b", "AS", "later")),
            'cannot copy from stage "1", it needs to be defined before current stage "stage-0"',
        ),
        ((("FROM", "a"), ("COPY", "--from=7", "s", "d")), "invalid stage index 7"),
    ],
)
def test_copy_from_self_later_or_in_a_cycle_is_an_error(
    lines: tuple[tuple[str, ...], ...], message: str
) -> None:
    with pytest.raises(RecipeError) as info:
        plan(recipe(*lines), {})
    assert info.value.message == message
    assert info.value.location is not None


def test_structural_errors() -> None:
    with pytest.raises(
        RecipeError,
        match=r"no build stage in current context \(only ARG may come before FROM, not RUN\)",
    ):
        plan(recipe(("RUN", "x"), ("FROM", "a")), {})
    with pytest.raises(RecipeError, match="dockerfile contains no stages to build"):
        plan(recipe(("ARG", "X=1")), {})
    with pytest.raises(RecipeError, match="duplicate stage name 'a'"):
        plan(recipe(("FROM", "x", "AS", "a"), ("FROM", "y", "AS", "A")), {})
    with pytest.raises(RecipeError, match="should not be blank"):
        plan(recipe(("ARG", "B"), ("FROM", "$B")), {})


def test_global_defaults_chain_and_platform() -> None:
    r = recipe(
        ("ARG", "V=1"),
        ("ARG", "IMG=img:$V"),
        ("FROM", "--platform=$BUILDPLATFORM", "$IMG-$TARGETARCH"),
    )
    built = plan(r, {"V": "2"})
    stage = built.stages[0]
    assert stage.base == f"img:2-{built.global_args['TARGETARCH']}"
    assert stage.platform == built.global_args["BUILDPLATFORM"]


def test_target_not_found_reads_as_buildkit_says_it() -> None:
    with pytest.raises(RecipeError) as info:
        plan(recipe(("FROM", "a", "AS", "build"), ("FROM", "b")), {}, target="bulid")
    # BuildKit: target stage "bulid" could not be found (did you mean build?)
    assert str(info.value) == 'target stage "bulid" could not be found (did you mean build?)'


def test_a_global_default_is_not_expanded_when_a_build_arg_gives_the_value() -> None:
    r = recipe(("ARG", "V=${UNSET:?needs a value}"), ("FROM", "img:$V"))
    assert plan(r, {"V": "1"}).stages[0].base == "img:1"
    with pytest.raises(RecipeError, match="needs a value"):
        plan(r, {})


@pytest.mark.parametrize(
    ("target", "build_args", "expected"),
    [
        (None, {}, "last"),  # the last stage's name
        ("first", {}, "first"),  # --target as given
        ("FIRST", {}, "FIRST"),
        ("first", {"TARGETSTAGE": "x"}, "x"),  # a build arg overrides it
    ],
)
def test_targetstage_names_the_stage_being_built(
    target: str | None, build_args: dict[str, str], expected: str
) -> None:
    r = recipe(("FROM", "a", "AS", "first"), ("FROM", "b", "AS", "Last"))
    assert plan(r, build_args, target).global_args["TARGETSTAGE"] == expected


def test_targetstage_is_default_when_the_last_stage_has_no_name() -> None:
    assert plan(recipe(("FROM", "a")), {}).global_args["TARGETSTAGE"] == "default"


def test_run_mount_from_is_a_dependency() -> None:
    r = recipe(
        ("FROM", "a", "AS", "deps"),
        ("FROM", "b", "AS", "unused"),
        ("FROM", "c"),
        (
            "RUN",
            "--mount=type=bind,from=deps,target=/d",
            "--mount=type=cache,from=img:1,target=/c",
            "x",
        ),
    )
    built = plan(r, {})
    assert built.stages[2].depends_on == {0}
    assert built.needed == (0, 2)
    later = recipe(
        ("FROM", "a"), ("RUN", "--mount=from=later,target=/d", "x"), ("FROM", "b", "AS", "later")
    )
    with pytest.raises(
        RecipeError,
        match='cannot copy from stage "later", it needs to be defined before current stage',
    ):
        plan(later, {})
