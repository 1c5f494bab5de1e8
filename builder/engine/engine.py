"""The build engine: a recipe and a context in, an image in the store out.

It walks the stages the target needs, in dependency order; in each, it resolves every
instruction against the stage's scope just before running its handler, so that ARG/ENV and
the base image's ENV are seen exactly as BuildKit sees them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.engine import workers
from builder.engine.context import BuildContext, Snapshot
from builder.engine.events import (
    BuildDone,
    BuildWarning,
    Reporter,
    StepDone,
    StepStarted,
    for_stage,
    ignore,
)
from builder.engine.executor import Executor, SandboxExecutor
from builder.engine.images import ImageSource, Puller
from builder.engine.lazystages import LazyStages, finished, side_stages
from builder.engine.options import BuildOptions, BuildResult
from builder.engine.pending import settle
from builder.engine.recipefile import read_recipe_bytes
from builder.engine.remote_cache import CacheLink, CacheUnusable, export_all, open_sources
from builder.engine.scheduler import build_stages, can_overlap
from builder.engine.state import EPOCH, ImageState
from builder.engine.steps import StepContext, execute
from builder.engine.steps.base import shown
from builder.engine.steps.run import check_entitlements
from builder.engine.stopper import Stopper
from builder.errors import (
    ImageNotFound,
    LayerError,
    RecipeError,
    RegistryError,
    SandboxError,
    StoreError,
    UsageError,
)
from builder.image.compression import LayerCompression
from builder.image.config import DEFAULT_PATH, ContainerConfig, ImageConfig
from builder.image.descriptor import Platform
from builder.image.epoch import created_at
from builder.recipe import BuildPlan, DockerIgnore, Recipe, Stage, StageScope, load, plan
from builder.recipe.dockerignore import ignore_file_for
from builder.recipe.instructions import From, Instruction, Maintainer, Onbuild
from builder.recipe.plan import stages_used_by
from builder.recipe.serial import parser_fingerprint, recipe_from_json, to_json
from builder.recipe.source import recipe_text
from builder.record import dataclass, field, replace
from builder.store import JsonRecord, Store

if TYPE_CHECKING:
    from builder.sandbox.snapshotter import Snapshotter


def read_recipe(options: BuildOptions, store: Store) -> Recipe:
    """The typed recipe; one parsed before from the same text is taken from the store, which
    spares the grammar's load (most of a cached rebuild's time)."""
    path = options.recipe_path()
    raw = read_recipe_bytes(path, "pass -f FILE or put a Dockerfile in the context")
    text = recipe_text(raw, path.name)  # its size and encoding, before the cache is asked
    key_source = b"\0".join([parser_fingerprint().encode(), path.name.encode(), raw])
    key = "recipe-" + hashlib.sha256(key_source).hexdigest()
    kept = store.cache.get(key, JsonRecord)
    if kept is not None:
        try:
            return recipe_from_json(kept.value["recipe"])
        except (KeyError, TypeError, ValueError):
            pass  # a damaged record: parse again
    recipe = load(text, filename=path.name)
    # Written behind the build's steps (store/finishing): its fsyncs cost 3 ms to 0.1 s
    # here on a cold build's critical path. The lease that holds the build settles it.
    parsed = JsonRecord({"recipe": to_json(recipe)})
    store.finishing.submit(lambda: store.cache.put(key, parsed))
    return recipe


def _memo_key(context: Path, kind: str = "memo") -> str:
    digest = hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:32]
    return f"context-{kind}-{digest}"


def _context(options: BuildOptions, store: Store) -> BuildContext:
    if not options.context.is_dir():
        raise UsageError(f"build context {options.context} is not a directory")
    ignore_path = ignore_file_for(options.recipe_path(), options.context)
    rules, text = None, ""
    if ignore_path is not None:
        # Its patterns match file names, which may be any bytes: a byte that is not UTF-8
        # stays the raw byte (surrogate-escaped) it stands for, as in the names; no error.
        text = ignore_path.read_bytes().decode("utf-8", "surrogateescape")
        rules = DockerIgnore.parse(text)
    memo_key = _memo_key(options.context)

    def load_memo() -> tuple[dict[str, Any], int]:
        # Only for a full walk: the snapshot spares a cached build this record (a line per
        # context file; ~10 ms of JSON for big-context's 5,057).
        kept = store.cache.get(memo_key, JsonRecord)
        record = kept.value if kept is not None else {}
        entries, made = record.get("entries"), record.get("made_ns")
        if not isinstance(entries, dict) or not isinstance(made, int):
            return {}, 0
        return entries, made

    # --no-cache plans every COPY (to write it): a walk to check the snapshot would be extra.
    kept = (
        None
        if options.no_cache
        else store.cache.get(_memo_key(options.context, "snapshot"), JsonRecord)
    )
    snapshot = Snapshot.from_json(kept.value) if kept is not None else None
    return BuildContext(
        options.context, rules, load_memo=load_memo, snapshot=snapshot, ignore_text=text
    )


def _save_memo(context: BuildContext, store: Store) -> None:
    """Keep the content digests of this walk for the next build of the same context, and
    the snapshot of it with this build's COPY digests."""
    if context.memo_changed():
        store.cache.put(
            _memo_key(context.root),
            JsonRecord({"made_ns": context.walked_ns, "entries": context.new_memo}),
        )
    snapshot = context.snapshot_to_save()
    if snapshot is not None:
        store.cache.put(_memo_key(context.root, "snapshot"), JsonRecord(snapshot.to_json()))


def _scratch() -> ImageState:
    """BuildKit's empty image: WorkingDir "/" (only scratch gets one) and the default PATH."""
    host = Platform.host()
    config = ImageConfig(
        architecture=host.architecture,
        os=host.os,
        variant=host.variant,
        config=ContainerConfig(env=(f"PATH={DEFAULT_PATH}",), working_dir="/"),
    )
    return ImageState(config=config, layers=(), key="scratch", created=EPOCH)


def _with_path(state: ImageState) -> ImageState:
    """BuildKit makes sure every stage's image has a PATH (a base image without one gets
    the default, in the config too)."""
    cc = state.config.config
    if any(entry.startswith("PATH=") for entry in cc.env):
        return state
    cc = cc.replace(env=(*cc.env, f"PATH={DEFAULT_PATH}"))
    return replace(state, config=state.config.with_container_config(cc))


def _base(stage: Stage, images: ImageSource, done: dict[str, ImageState]) -> ImageState:
    if stage.base_stage is not None:
        return done[str(stage.base_stage)]
    if stage.base.lower() == "scratch":
        return _scratch()
    loc = stage.from_instruction.location
    try:
        image = images.get(stage.base)
    except ImageNotFound as err:
        if images.pulls:
            raise ImageNotFound(f"{loc.filename}:{loc.line}: FROM {stage.base}: {err}") from None
        raise ImageNotFound(
            f"{loc.filename}:{loc.line}: FROM {stage.base}: no such image in the store"
            " (import it with `builder import` or build it first)"
        ) from None
    except RegistryError as err:
        raise RegistryError(f"{loc.filename}:{loc.line}: FROM {stage.base}: {err}") from None
    return ImageState.of_image(image)


def build(
    options: BuildOptions,
    store: Store,
    report: Reporter = ignore,
    *,
    executor: Executor | None = None,  # what runs RUN and the writers; the sandbox by default
    puller: Puller | None = None,  # gets images the store lacks (the CLI's registry client)
) -> BuildResult:
    # The lease keeps gc away from blobs this build writes before it tags the image.
    with store.lease():
        warn = _warner(report)
        remotes = open_sources(options.cache_from, store, warn)
        while True:
            link = CacheLink(store, remotes)
            defer = link.add_base if link.defers_bases else None
            images = ImageSource(store, puller, always_pull=options.pull, defer=defer)
            stopper = Stopper()
            runner: Executor
            sandboxed: SandboxExecutor | None = None
            if executor is None:
                runner = sandboxed = _sandbox_executor(store, options, stopper)
            else:
                runner = executor
            try:
                return _build(options, store, report, runner, images, link, stopper)
            except CacheUnusable as err:  # as BuildKit does: an unusable import is ignored
                warn(f"cache import {err}; building again without it")
                remotes = link.without(err.source)
            finally:
                if sandboxed is not None:  # its RUN steps' network helpers reaped
                    sandboxed.close()
                workers.retire()  # no idle thread outlives the build (the CLI's quick exit)


def _sandbox_executor(
    store: Store, options: BuildOptions, stopper: Stopper | None
) -> SandboxExecutor:
    def snapshotter() -> Snapshotter:  # asked only when a step runs: a cached build never is
        from builder.sandbox.snapshotter import choose

        return choose(options.snapshotter, store.tmp_dir, store.paths.snapshotter)

    return SandboxExecutor(
        store.tmp_dir,
        options.limits,
        userns=options.userns,
        seccomp_cache=store.paths.seccomp,
        stopper=stopper,
        snapshotter=functools.cache(snapshotter),
        discard_dir=store.scratch.discard,
    )


def _warner(report: Reporter) -> Callable[[str], None]:
    def warn(message: str) -> None:
        report(BuildWarning(message))

    return warn


@dataclass
class _Run:
    """One build's moving parts: what every stage needs, and the step counters."""

    options: BuildOptions
    store: Store
    report: Reporter
    executor: Executor
    images: ImageSource
    context: BuildContext
    escape: str
    global_args: dict[str, str]
    total: int
    new_layers: LayerCompression  # what a step that runs writes its layer with
    cache: CacheLink
    number: int = 0
    steps: int = 0
    cached_steps: int = 0
    done: dict[str, ImageState] = field(default_factory=dict)
    probing: bool = False  # a side stage's keys only (engine/lazystages)
    lazy: LazyStages | None = None
    plan: BuildPlan | None = None
    stopper: Stopper | None = None  # stages run at once: a failure stops the others' steps
    concurrent: bool = False  # steps of several stages may interleave in the log

    def lane(self, number: int, report: Reporter) -> _Run:
        """A copy for one stage on a thread of its own (engine/scheduler): its step counters
        and numbers from `number`; the rest (finished stages, cache, store...) shared."""
        lane = copy.copy(self)
        lane.number, lane.steps, lane.cached_steps, lane.report = number, 0, 0, report
        return lane

    def step(
        self,
        instr: Instruction,
        label: str,
        state: ImageState,
        scope: StageScope,
        text: str | None = None,
    ) -> ImageState:
        try:
            return self._step(instr, label, state, scope, text)
        except BaseException:  # a stop asked by another stage too
            _settle_quietly(state)
            raise

    def _step(
        self,
        instr: Instruction,
        label: str,
        state: ImageState,
        scope: StageScope,
        text: str | None,
    ) -> ImageState:
        if self.stopper is not None:
            self.stopper.check()
        self.steps += 1
        t0 = time.monotonic()
        self.report(StepStarted(label, self.number, self.total, text or shown(instr, 120)))
        ctx = StepContext(
            store=self.store,
            scope=scope,
            context=self.context,
            report=self.report,
            number=self.number,
            no_cache=self.options.no_cache,
            compression=self.new_layers,
            network=self.options.network,
            allow=self.options.entitlements(),
            add_hosts=self.options.add_hosts,
            stages=self.done,
            escape=self.escape,
            secrets=self.options.secrets,
            source_date_epoch=self.options.source_date_epoch,
            executor=self.executor,
            images=self.images.get if self.images.pulls else None,
            cache=self.cache,
            probe=self.probing,
            realize=self.lazy.realize if self.lazy is not None else lambda state: state,
        )
        try:
            state = execute(instr, state, ctx)
        except (SandboxError, LayerError, StoreError) as err:  # they know no recipe: say where
            if getattr(err, "located", False):  # a pending RUN's, named already (pending)
                raise
            loc = instr.location
            raise type(err)(f"{loc.filename}:{loc.line}: {shown(instr, 120)}: {err}") from err
        self.cached_steps += state.from_cache
        self.report(StepDone(self.number, cached=state.from_cache, seconds=time.monotonic() - t0))
        return state

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        report, self.report = self.report, ignore
        try:
            yield
        finally:
            self.report = report

    def stage(self, stage: Stage) -> ImageState:
        label = stage.name or str(stage.index)
        report = self.report
        steps = len(stage.instructions) + 1
        self.report = for_stage(report, label, self.number + 1, steps, self.concurrent)
        try:
            return self._stage(stage, label)
        finally:
            self.report = report

    def _stage(self, stage: Stage, label: str) -> ImageState:
        if self.stopper is not None:
            self.stopper.check()
        self.number += 1
        text = f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else "")
        self.report(StepStarted(label, self.number, self.total, text))
        # A CMD set in the base stage counts as inherited here (ENTRYPOINT drops it).
        state = replace(_with_path(_base(stage, self.images, self.done)), cmd_set_in_stage=False)
        if self.options.source_date_epoch is not None:
            # Every step this build adds is dated at the epoch, config-only ones included
            # (they take the state's time); the base image's history keeps its own times.
            state = replace(state, created=created_at(self.options.source_date_epoch))
        self.report(StepDone(self.number, cached=True, seconds=0.0))
        scope = StageScope(self.global_args, self.options.build_args, state.config.config.env)
        state = self.triggers(stage, label, state, scope)
        for instr in stage.instructions:
            self.number += 1
            state = self.step(instr, label, state, scope)
        return settle(state)  # its last RUN's layer, if still being written

    def triggers(
        self, stage: Stage, label: str, state: ImageState, scope: StageScope
    ) -> ImageState:
        """The base image's ONBUILD triggers run right after FROM, as docker runs them;
        the new image does not inherit them."""
        triggers = state.config.config.on_build
        if not triggers:
            return state
        cc = state.config.config.replace(on_build=())
        state = replace(state, config=state.config.with_container_config(cc))
        loc = stage.from_instruction.location
        for trigger in triggers:
            try:
                (instr,) = load(
                    trigger, filename=f"{loc.filename}:{loc.line}: ONBUILD"
                ).instructions
            except ValueError:
                raise RecipeError(
                    f"ONBUILD trigger {trigger!r} of {stage.base} is not one instruction", loc
                ) from None
            if isinstance(instr, From | Onbuild | Maintainer):
                raise RecipeError(
                    f"{stage.base} has an ONBUILD {instr.keyword} trigger,"
                    " which docker does not allow",
                    loc,
                )
            self.trigger_sources(instr, stage)
            state = self.step(instr, label, state, scope, text=f"ONBUILD {trigger}")
        return state

    def trigger_sources(self, instr: Instruction, stage: Stage) -> None:
        """A base image's trigger may COPY --from (or mount from) a stage of this recipe,
        which BuildKit then adds as a dependency (initOnBuildTriggers): one the plan did not
        need is built now. Only an earlier stage; a later name stays an image reference."""
        if self.plan is None:
            return
        for index in stages_used_by(instr, self.plan):
            if index < stage.index and str(index) not in self.done:
                source = self.plan.stages[index]
                finished(self.done, index, source, self.stage(source))


def _settle_quietly(state: ImageState) -> None:
    """A failed step's build ends: the RUN before it still writing its layer (engine/pending)
    finishes it (the next build reuses it), before the lease ends; its failure is not the
    one told."""
    with contextlib.suppress(Exception):
        settle(state)


def _target_chain(build_plan: BuildPlan) -> list[int]:
    """The target stage and the stages it is FROM: those whose layers its image has."""
    chain: list[int] = []
    index: int | None = build_plan.target
    while index is not None:
        chain.append(index)
        index = build_plan.stages[index].base_stage
    return chain


def _build(
    options: BuildOptions,
    store: Store,
    report: Reporter,
    executor: Executor,
    images: ImageSource,
    link: CacheLink,
    stopper: Stopper,
) -> BuildResult:
    started = time.monotonic()
    wanted = options.requested_compression()  # a bad value fails before any work
    recipe = read_recipe(options, store)
    build_plan: BuildPlan = plan(recipe, options.build_args, options.target)
    if build_plan.unused_build_args:
        names = ", ".join(build_plan.unused_build_args)
        report(BuildWarning(f"build args not consumed by any ARG: {names}"))
    check_entitlements(
        (i for n in build_plan.needed for i in build_plan.stages[n].instructions),
        options.entitlements(),
    )
    run = _Run(
        options=options,
        store=store,
        report=report,
        executor=executor,
        images=images,
        context=_context(options, store),
        escape=recipe.escape,
        global_args=build_plan.global_args,
        total=sum(len(build_plan.stages[i].instructions) + 1 for i in build_plan.needed),
        new_layers=wanted or LayerCompression(),
        cache=link,
        plan=build_plan,
        stopper=stopper,
    )
    chain = _target_chain(build_plan)
    # With an imported cache, a stage only copied from is built only if a step needs it.
    lazy = link.defers_bases and not options.no_cache
    side = side_stages(build_plan, chain) if lazy else frozenset()
    run.lazy = LazyStages(run, build_plan) if side else None
    jobs = options.jobs or os.cpu_count() or 1
    # With an imported cache the stages go in order: lazystages decides which run at all.
    if jobs > 1 and not link.defers_bases and can_overlap(build_plan):
        run.concurrent = True
        build_stages(run, build_plan, jobs, stopper)
    else:
        for index in build_plan.needed:
            stage = build_plan.stages[index]
            link.stage = index
            state = run.lazy.probe(index) if run.lazy and index in side else run.stage(stage)
            finished(run.done, index, stage, state)
    _save_memo(run.context, store)
    final = run.done[str(build_plan.target)]
    config = final.config.with_created(final.created)
    if options.labels:  # docker build --label: on the image, not on any step
        cc = config.config
        config = config.with_container_config(cc.replace(labels={**cc.labels, **options.labels}))
    layers = final.layers
    store.finish()  # the layer blobs written in the background are in place (or it failed)
    for layer in layers:  # the image's blobs must be in the store; fetched if imported
        link.need(layer)
    if wanted is not None:  # every layer in it, the cached and the base's too
        layers = store.blobs_for(layers, config.diff_ids, wanted)
    image = store.write_image(config, layers)
    for tag in options.tags:
        store.layout.tag(tag, image.descriptor)
    export_all(options.cache_to, store, link, chain)
    image_id = str(image.id)
    elapsed = time.monotonic() - started
    report(
        BuildDone(image_id, str(image.digest), options.tags, elapsed, run.steps, run.cached_steps)
    )
    return BuildResult(image_id, str(image.digest), options.tags, run.steps, run.cached_steps)
