"""The stage graph: which stages a recipe has, what each builds on, and which to build.

Pure: global args are evaluated here (they are all FROM lines need); everything inside a
stage is left for the engine, which drives a StageScope as it executes.
"""

from __future__ import annotations

from collections.abc import Mapping

from builder.errors import RecipeError
from builder.recipe.gostr import go_quote
from builder.recipe.instructions import Arg, Copy, From, Instruction, Onbuild, Recipe, Run
from builder.recipe.mounts import mount_from
from builder.recipe.resolve import resolve
from builder.recipe.scope import PROXY_ARGS, platform_args
from builder.recipe.suggest import closest
from builder.record import dataclass, replace


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
    preamble: list[Arg], build_args: Mapping[str, str], escape: str, stage: str | None
) -> tuple[dict[str, str], set[str]]:
    env = platform_args(stage=stage)
    # BuildKit: a --build-arg overrides an automatic arg (TARGETSTAGE=x) too.
    env.update({k: v for k, v in build_args.items() if k in env})
    declared: set[str] = set()
    for instr in preamble:
        for name, default in instr.args:
            declared.add(name)
            if name in build_args:  # the default is never expanded: it may not even parse
                env[name] = build_args[name]
            elif default is not None:
                # Each default may use the global args declared before it.
                one = resolve(replace(instr, args=((name, default),)), env, escape)
                assert isinstance(one, Arg)
                value = one.args[0][1]
                assert value is not None
                env[name] = value
    return env, declared


# (stage index, the instruction, the reference as written): a use of another stage.
StageUse = tuple[int, Instruction, str]


def _stage_uses(body: tuple[Instruction, ...], names: Mapping[str, int]) -> list[StageUse]:
    """Each COPY --from and RUN --mount from= naming a stage (by name or index), earlier or
    not: a later one is an error, after the cycle check BuildKit makes first."""
    found: list[StageUse] = []
    for instr in body:
        refs: list[str] = []
        if isinstance(instr, Copy) and instr.from_stage is not None:
            refs.append(instr.from_stage)
        if isinstance(instr, Run):
            refs.extend(ref for ref in map(mount_from, instr.mounts) if ref is not None)
        for ref in refs:
            index = int(ref) if ref.isdecimal() else names.get(ref.lower())
            if index is not None:
                found.append((index, instr, ref))
    return found


def _stage_label(index: int, name: str | None) -> str:
    return name if name is not None else f"stage-{index}"  # BuildKit's name for it


def _check_cycles(sources: list[list[StageUse]], labels: list[str]) -> None:
    """BuildKit's validateCircularDependency: the first stage (in recipe order) from which a
    cycle of COPY --from (or RUN --mount from=) can be reached is named, at the lines on
    the way."""
    visited: set[int] = set()

    def visit(index: int, path: list[int], via: list[Instruction]) -> list[Instruction] | None:
        if index in visited:
            return None
        visited.add(index)
        for dep, copy, _ in sources[index]:
            if dep >= len(sources):
                raise RecipeError(f"invalid stage index {dep}", copy.location)
            if dep in path or dep == index:
                return [*via, copy]
            found = visit(dep, [*path, index], [*via, copy])
            if found is not None:
                return found
        return None

    for index in range(len(sources)):
        cycle = visit(index, [], [])
        if cycle is not None:
            raise RecipeError(
                f"circular dependency detected on stage: {labels[index]}", cycle[-1].location
            )


def _dependencies(stage_index: int, sources: list[StageUse], labels: list[str]) -> set[int]:
    deps: set[int] = set()
    for index, copy, target in sources:
        if index >= stage_index:
            raise RecipeError(
                f"cannot copy from stage {go_quote(str(target))}, it needs to be defined before"
                f" current stage {go_quote(labels[stage_index])}",
                copy.location,
            )
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
                "no build stage in current context",  # BuildKit's words
                instr.location,
                f"only ARG may come before FROM, not {instr.keyword}",
            )
    if not groups:
        location = recipe.instructions[0].location if recipe.instructions else None
        raise RecipeError("dockerfile contains no stages to build", location, "add FROM <image>")
    return preamble, [(f, tuple(body)) for f, body in groups]


def plan(recipe: Recipe, build_args: Mapping[str, str], target: str | None = None) -> BuildPlan:
    """The stage graph of `recipe` and the stages needed to build `target` (default: last)."""
    preamble, groups = _split(recipe)
    # TARGETSTAGE: --target as given, else the last stage's name (BuildKit's defaultArgs).
    stage_name = target if target is not None else groups[-1][0].stage_name
    global_env, global_declared = _global_args(preamble, build_args, recipe.escape, stage_name)
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
    labels = [_stage_label(i, from_raw.stage_name) for i, (from_raw, _) in enumerate(groups)]
    sources = [_stage_uses(body, names) for _, body in groups]
    _check_cycles(sources, labels)
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
        uses = sources[index]
        if base_stage is not None:
            # The base stage's ONBUILD triggers run here: their COPY --from and RUN --mount
            # from= stages are this stage's dependencies (BuildKit's initOnBuildTriggers).
            triggers = [i.instruction for i in groups[base_stage][1] if isinstance(i, Onbuild)]
            uses = [*uses, *_stage_uses(tuple(triggers), names)]
        deps = _dependencies(index, uses, labels)
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
        close = closest(target, list(names), case_sensitive=True)
        hint = (
            f"did you mean {close}?"
            if close
            else (
                f"stages: {', '.join(names)}"
                if names
                else "the recipe names no stage (FROM x AS name)"
            )
        )
        # BuildKit's words: `target stage "bulid" could not be found (did you mean build?)`
        raise RecipeError(f"target stage {go_quote(target)} could not be found", None, hint)
    return index


def stages_used_by(instr: Instruction, build_plan: BuildPlan) -> tuple[int, ...]:
    """The stages `instr` copies or mounts from, each with the stages it needs, in
    dependency order: what a base image's ONBUILD trigger needs built first."""
    names = {s.name: s.index for s in build_plan.stages if s.name is not None}
    used = [index for index, _, _ in _stage_uses((instr,), names)]
    wanted: set[int] = set()
    for index in used:
        if index < len(build_plan.stages):
            wanted.update(_reachable(list(build_plan.stages), index))
    return tuple(sorted(wanted))


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
