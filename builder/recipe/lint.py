"""Static checks of a recipe, named after BuildKit's build checks where one exists.

Errors are whatever `plan()` (or expansion) would raise, as findings instead of exceptions,
carrying the error itself so that the CLI shows them exactly as `builder build` does. The
base image's own ENV is unknown here (no I/O), so UndefinedVar assumes only PATH for a
stage on an external image; a stage on an earlier stage inherits that stage's ENV. A flag
value that is invalid only because it uses such a variable (`--chmod=$MODE`, MODE from
the base image) is therefore not an error here: the UndefinedVar warning points at it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from builder.errors import RecipeError, SourceLocation
from builder.image.config import DEFAULT_PATH
from builder.recipe import instructions as ins
from builder.recipe.plan import BuildPlan, Stage, plan
from builder.recipe.resolve import resolve
from builder.recipe.scope import PROXY_ARGS, StageScope
from builder.recipe.values import InvalidValue
from builder.record import dataclass, replace

Severity = Literal["error", "warning"]
_ASSUMED_BASE_ENV = (f"PATH={DEFAULT_PATH}",)


@dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str
    message: str
    location: SourceLocation
    error: RecipeError | None = None  # for an error: what `builder build` raises for it


class _Recorder(Mapping[str, str]):
    """An env that remembers the names looked up and not found."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.missing: set[str] = set()

    def __getitem__(self, key: str) -> str:
        if key not in self._env:
            self.missing.add(key)
            raise KeyError(key)
        return self._env[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _undefined(
    instr: ins.Instruction,
    env: Mapping[str, str],
    escape: str,
    declared: set[str],
    rule: str,
    base_env_unknown: bool = False,
) -> tuple[ins.Instruction, list[Finding]]:
    recorder = _Recorder(env)
    try:
        resolved = resolve(instr, recorder, escape)
    except InvalidValue:
        # The base image may set what we could not see; then build may well succeed.
        if not (base_env_unknown and recorder.missing):
            raise
        resolved = instr
    findings = [
        Finding(
            "warning",
            rule,
            f"Usage of undefined variable '${name}'",
            instr.location,
        )
        # A declared ARG without a value is not "undefined" (BuildKit skips those too).
        for name in sorted(recorder.missing - declared - PROXY_ARGS)
    ]
    return resolved, findings


def _stage_words(stage: Stage) -> list[str]:
    return stage.from_instruction.original.split()


def _stage_checks(stage: Stage, stage_names: set[str]) -> list[Finding]:
    findings: list[Finding] = []
    loc = stage.from_instruction.location
    words = _stage_words(stage)
    if len(words) >= 3 and words[-2].lower() == "as":
        keyword, as_word, name = words[0], words[-2], words[-1]
        if name != name.lower():
            findings.append(
                Finding(
                    "warning", "StageNameCasing", f"Stage name '{name}' should be lowercase", loc
                )
            )
        if (keyword.isupper() and not as_word.isupper()) or (
            keyword.islower() and not as_word.islower()
        ):
            findings.append(
                Finding(
                    "warning",
                    "FromAsCasing",
                    f"'{as_word}' and '{keyword}' keywords' casing do not match",
                    loc,
                )
            )
    base = stage.base
    if base != "scratch" and stage.base_stage is None and base.lower() not in stage_names:
        name_part = base.rsplit("/", 1)[-1]
        if "@" not in base and (":" not in name_part or name_part.endswith(":latest")):
            findings.append(
                Finding(
                    "warning",
                    "PinnedBaseImage",
                    f"base image '{base}' has no tag or uses 'latest'; pin a version or digest",
                    loc,
                )
            )
    seen: dict[str, ins.Instruction] = {}
    for instr in stage.instructions:
        if isinstance(instr, ins.Maintainer):
            findings.append(
                Finding(
                    "warning",
                    "MaintainerDeprecated",
                    "The MAINTAINER instruction is deprecated, use a label instead",
                    instr.location,
                )
            )
        if isinstance(instr, ins.Cmd | ins.Entrypoint):
            if not instr.exec_form:
                findings.append(
                    Finding(
                        "warning",
                        "JSONArgsRecommended",
                        f"JSON arguments recommended for {instr.keyword} to prevent "
                        "unintended behavior related to OS signals",
                        instr.location,
                    )
                )
            if instr.keyword in seen:
                findings.append(
                    Finding(
                        "warning",
                        "MultipleInstructionsDisallowed",
                        f"Multiple {instr.keyword} instructions should not be used in the same "
                        "stage because only the last one will be used",
                        seen[instr.keyword].location,
                    )
                )
            seen[instr.keyword] = instr
    return findings


def _variable_checks(built: BuildPlan, escape: str, build_args: Mapping[str, str]) -> list[Finding]:
    findings: list[Finding] = []
    stage_env: dict[int, list[str]] = {}
    for stage in built.stages:
        _, found = _undefined(
            stage.from_instruction,
            built.global_args,
            escape,
            set(built.global_args),
            "UndefinedArgInFrom",
        )
        findings.extend(found)
        # scratch has the default PATH (BuildKit's empty image), as an image is assumed to
        if stage.base_stage is not None:
            base_env = stage_env[stage.base_stage]
        else:
            base_env = list(_ASSUMED_BASE_ENV)
        scope = StageScope(built.global_args, build_args, base_env)
        external = stage.base_stage is None and stage.base != "scratch"
        for instr in stage.instructions:
            if isinstance(instr, ins.Arg):  # as the build: a given value's default is not read
                given = tuple((n, None if scope.has_build_arg(n) else d) for n, d in instr.args)
                instr = replace(instr, args=given)
            resolved, found = _undefined(
                instr,
                scope.expansion_env(),
                escape,
                set(scope.declared_args()),
                "UndefinedVar",
                base_env_unknown=external,
            )
            findings.extend(found)
            if isinstance(resolved, ins.Arg):
                for name, default in resolved.args:
                    scope.declare_arg(name, default)
            elif isinstance(resolved, ins.Env):
                for key, value in resolved.pairs:
                    scope.set_env(key, value)
        stage_env[stage.index] = scope.image_env()
    return findings


def lint(recipe: ins.Recipe, build_args: Mapping[str, str]) -> list[Finding]:
    """Warnings and errors for `recipe`, sorted by line."""
    start = SourceLocation(recipe.filename, 1, 1)
    try:
        built = plan(recipe, build_args)
    except RecipeError as err:
        return [_error(err, start)]
    findings: list[Finding] = []
    if built.unused_build_args:
        names = ", ".join(built.unused_build_args)
        findings.append(
            Finding("warning", "UnusedBuildArgs", f"build args not consumed: {names}", start)
        )
    names_seen = {s.name for s in built.stages if s.name}
    for stage in built.stages:
        findings.extend(_stage_checks(stage, names_seen))
    try:
        findings.extend(_variable_checks(built, recipe.escape, build_args))
    except RecipeError as err:
        findings.append(_error(err, start))
    return sorted(findings, key=lambda f: (f.location.line, f.location.column, f.rule))


def _error(err: RecipeError, start: SourceLocation) -> Finding:
    return Finding("error", "InvalidRecipe", err.message, err.location or start, err)
