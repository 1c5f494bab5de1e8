"""The build engine: a recipe and a context in, an image in the store out.

It walks the stages the target needs, in dependency order; in each, it resolves every
instruction against the stage's scope just before running its handler, so that ARG/ENV and
the base image's ENV are seen exactly as BuildKit sees them.
"""

from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path

from builder.build.context import BuildContext
from builder.build.events import BuildDone, Reporter, StepDone, StepStarted, ignore
from builder.build.options import BuildOptions, BuildResult
from builder.build.state import ImageState
from builder.build.steps import StepContext, execute
from builder.errors import ImageNotFound, LayerError, SandboxError, UsageError
from builder.image.config import ImageConfig
from builder.recipe import BuildPlan, DockerIgnore, Recipe, Stage, StageScope, load, plan
from builder.recipe.dockerignore import ignore_file_for
from builder.store import Store

EPOCH = "1970-01-01T00:00:00Z"
GOARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
}


def read_recipe(options: BuildOptions) -> Recipe:
    path = options.recipe_path()
    try:
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise UsageError(
            f"no recipe at {path} (pass -f FILE or put a Dockerfile in the context)"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a recipe") from None
    return load(text, filename=path.name)


def _memo_key(context: Path) -> str:
    return "context-memo-" + hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:32]


def _context(options: BuildOptions, store: Store) -> BuildContext:
    if not options.context.is_dir():
        raise UsageError(f"build context {options.context} is not a directory")
    ignore_path = ignore_file_for(options.recipe_path(), options.context)
    rules = DockerIgnore.parse(ignore_path.read_text()) if ignore_path else None
    record = store.cache_get(_memo_key(options.context)) or {}
    entries = record.get("entries")
    made = record.get("made_ns")
    if not isinstance(entries, dict) or not isinstance(made, int):
        entries, made = {}, 0
    return BuildContext(options.context, rules, memo=entries, memo_made_ns=made)


def _save_memo(context: BuildContext, store: Store) -> None:
    """Keep the content digests of this walk for the next build of the same context."""
    if context.memo_changed():
        store.cache_put(
            _memo_key(context.root),
            {"made_ns": context.walked_ns, "entries": context.new_memo},
        )


def _scratch() -> ImageState:
    config = ImageConfig(
        architecture=GOARCH.get(platform.machine(), platform.machine()), os="linux"
    )
    return ImageState(config=config, layers=(), key="scratch", created=EPOCH)


def _base(stage: Stage, store: Store, done: dict[str, ImageState]) -> ImageState:
    if stage.base_stage is not None:
        return done[str(stage.base_stage)]
    if stage.base.lower() == "scratch":
        return _scratch()
    try:
        manifest_desc = store.resolve(stage.base)
    except ImageNotFound:
        loc = stage.from_instruction.location
        raise ImageNotFound(
            f"{loc.filename}:{loc.line}: FROM {stage.base}: no such image in the store"
            " (import it with `builder import` or build it first)"
        ) from None
    manifest = store.manifest(manifest_desc)
    config = store.config(manifest)
    return ImageState(
        config=config,
        layers=tuple(manifest.layers),
        key=f"image:{manifest_desc.digest}",
        created=config.created or EPOCH,
        cmd_set_in_stage=False,
    )


def _describe(instr: object) -> str:
    original = getattr(instr, "original", "")
    first = " ".join(str(original).split())
    return first if len(first) <= 120 else first[:117] + "..."


def build(options: BuildOptions, store: Store, report: Reporter = ignore) -> BuildResult:
    # The lease keeps gc away from blobs this build writes before it tags the image.
    with store.lease():
        return _build(options, store, report)


def _build(options: BuildOptions, store: Store, report: Reporter) -> BuildResult:
    started = time.monotonic()
    recipe = read_recipe(options)
    build_plan: BuildPlan = plan(recipe, options.build_args, options.target)
    context = _context(options, store)
    total = sum(len(build_plan.stages[i].instructions) + 1 for i in build_plan.needed)
    done: dict[str, ImageState] = {}
    number = 0
    steps = cached_steps = 0
    for index in build_plan.needed:
        stage = build_plan.stages[index]
        label = stage.name or str(index)
        number += 1
        text = f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else "")
        report(StepStarted(label, number, total, text))
        state = _base(stage, store, done)
        report(StepDone(number, cached=True, seconds=0.0))
        scope = StageScope(
            build_plan.global_args, options.build_args, state.config.config.env or ()
        )
        for instr in stage.instructions:
            number += 1
            steps += 1
            t0 = time.monotonic()
            report(StepStarted(label, number, total, _describe(instr)))
            ctx = StepContext(
                store=store,
                scope=scope,
                context=context,
                report=report,
                number=number,
                no_cache=options.no_cache,
                compression=options.compression,
                network=options.network,
                stages=done,
                escape=recipe.escape,
            )
            try:
                state = execute(instr, state, ctx)
            except (SandboxError, LayerError) as err:  # they know no recipe: say where
                loc = instr.location
                raise type(err)(f"{loc.filename}:{loc.line}: {_describe(instr)}: {err}") from err
            cached = state.from_cache
            cached_steps += cached
            report(StepDone(number, cached=cached, seconds=time.monotonic() - t0))
        done[str(index)] = state
        if stage.name:
            done[stage.name] = state
    _save_memo(context, store)
    final = done[str(build_plan.target)]
    config = final.config.with_created(final.created)
    manifest = store.write_image(config, final.layers)
    for tag in options.tags:
        store.tag(tag, manifest)
    image_id = str(store.manifest(manifest).config.digest)
    report(
        BuildDone(
            image_id,
            str(manifest.digest),
            options.tags,
            time.monotonic() - started,
            steps,
            cached_steps,
        )
    )
    return BuildResult(image_id, str(manifest.digest), options.tags, steps, cached_steps)
