"""The stage graph: which stages a recipe has, what each builds on, and which to build.

Pure: global args are evaluated here (they are all FROM lines need); everything inside a
stage is left for the engine, which drives a StageScope as it executes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from builder.errors import RecipeError, SourceLocation
from builder.recipe.instructions import Arg, Copy, From, Instruction, Recipe, Run
from builder.recipe.mounts import mount_from
from builder.recipe.resolve import resolve
from builder.recipe.scope import PROXY_ARGS, platform_args


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None
    base: str  # the FROM image, expanded with the global args
    base_stage: int | None  # when `base` names an earlier stage (case-insensitive)
    platform: str | None
    instructions: tuple[Instruction, ...]  # everything after the FROM, raw
    from_instruction: From
    depends_on: frozenset[int]  # base stage, COPY --from and RUN --mount from= stages


@dataclass(frozen=True)
class BuildPlan:
    stages: tuple[Stage, ...]
    target: int
    global_args: dict[str, str]
    needed: tuple[int, ...]  # stages reachable from the target, dependencies first
    unused_build_args: tuple[str, ...]


def _global_args(
    preamble: list[Arg], build_args: Mapping[str, str], escape: str
) -> tuple[dict[str, str], set[str]]:
    env = platform_args()
    declared: set[str] = set()
    for instr in preamble:
        # Each default may use the global args declared before it.
        resolved = resolve(instr, env, escape)
        assert isinstance(resolved, Arg)
        for name, default in resolved.args:
            declared.add(name)
            if name in build_args:
                env[name] = build_args[name]
            elif default is not None:
                env[name] = default
    return env, declared


def _stage_ref(
    ref: str, names: Mapping[str, int], current: int, location: SourceLocation, what: str
) -> int | None:
    """The stage `ref` (a name or an index) points to, or None when it names an image."""
    index = int(ref) if ref.isdecimal() else names.get(ref.lower())
    if index is None:
        return None
    if index >= current:
        which = "its own stage" if index == current else "a later stage"
        raise RecipeError(
            f"{what}={ref} refers to {which}",
            location,
            "a stage can only use stages defined before it",
        )
    return index


def _dependencies(
    stage_index: int, body: tuple[Instruction, ...], names: Mapping[str, int]
) -> set[int]:
    deps: set[int] = set()
    for instr in body:
        refs: list[tuple[str, str]] = []
        if isinstance(instr, Copy) and instr.from_stage is not None:
            refs.append((instr.from_stage, "COPY --from"))
        if isinstance(instr, Run):
            found = (mount_from(spec) for spec in instr.mounts)
            refs.extend((ref, "RUN --mount from") for ref in found if ref is not None)
        for ref, what in refs:
            index = _stage_ref(ref, names, stage_index, instr.location, what)
            if index is not None:
                deps.add(index)
    return deps


def _split(recipe: Recipe) -> tuple[list[Arg], list[tuple[From, tuple[Instruction, ...]]]]:
    preamble: list[Arg] = []
    groups: list[tuple[From, list[Instruction]]] = []
    for instr in recipe.instructions:
        if isinstance(instr, From):
            groups.append((instr, []))
        elif groups:
            groups[-1][1].append(instr)
        elif isinstance(instr, Arg):
            preamble.append(instr)
        else:
            raise RecipeError(
                f"{instr.keyword} before the first FROM",
                instr.location,
                "only ARG may come before FROM",
            )
    if not groups:
        location = recipe.instructions[0].location if recipe.instructions else None
        raise RecipeError("the recipe has no FROM instruction", location, "add FROM <image>")
    return preamble, [(f, tuple(body)) for f, body in groups]


def plan(recipe: Recipe, build_args: Mapping[str, str], target: str | None = None) -> BuildPlan:
    """The stage graph of `recipe` and the stages needed to build `target` (default: last)."""
    preamble, groups = _split(recipe)
    global_env, global_declared = _global_args(preamble, build_args, recipe.escape)
    # All names first: a COPY --from naming its own or a later stage is an error, not an image.
    names: dict[str, int] = {}
    for index, (from_raw, _) in enumerate(groups):
        name = from_raw.stage_name
        if name is not None:
            if name in names:
                raise RecipeError(
                    f"duplicate stage name {name!r}",
                    from_raw.location,
                    f"stage {names[name]} already has this name",
                )
            names[name] = index
    stages: list[Stage] = []
    for index, (from_raw, body) in enumerate(groups):
        resolved = resolve(from_raw, global_env, recipe.escape)
        assert isinstance(resolved, From)
        if not resolved.image:
            raise RecipeError(
                f"base name ({from_raw.image}) should not be blank",
                from_raw.location,
                "declare the ARG before the first FROM or pass --build-arg",
            )
        # Only an earlier stage can be a base; a later name is an image reference.
        base_stage = names.get(resolved.image.lower())
        if base_stage is not None and base_stage >= index:
            base_stage = None
        deps = _dependencies(index, body, names)
        if base_stage is not None:
            deps.add(base_stage)
        stages.append(
            Stage(
                index=index,
                name=from_raw.stage_name,
                base=resolved.image,
                base_stage=base_stage,
                platform=resolved.platform,
                instructions=body,
                from_instruction=from_raw,
                depends_on=frozenset(deps),
            )
        )
    target_index = _target(target, names, len(stages))
    needed = _reachable(stages, target_index)
    consumed = set(global_declared) | PROXY_ARGS
    for i in needed:
        for instr in stages[i].instructions:
            if isinstance(instr, Arg):
                consumed.update(name for name, _ in instr.args)
    unused = tuple(sorted(set(build_args) - consumed))
    return BuildPlan(tuple(stages), target_index, global_env, needed, unused)


def _target(target: str | None, names: Mapping[str, int], count: int) -> int:
    if target is None:
        return count - 1
    index = names.get(target.lower())
    if index is None:
        close = difflib.get_close_matches(target.lower(), list(names), n=1)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else (
                f"stages: {', '.join(names)}"
                if names
                else "the recipe names no stage (FROM x AS name)"
            )
        )
        raise RecipeError(f"target stage {target!r} could not be found", None, hint)
    return index


def _reachable(stages: list[Stage], target: int) -> tuple[int, ...]:
    seen: set[int] = set()
    todo = [target]
    while todo:
        index = todo.pop()
        if index not in seen:
            seen.add(index)
            todo.extend(stages[index].depends_on)
    # Dependencies always have lower indices, so index order is a dependency order.
    return tuple(sorted(seen))
