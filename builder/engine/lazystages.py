"""Lazy stages: a stage the target only copies from is built only if a step that misses
needs its files, as BuildKit's solver does.

BuildKit loads a step's result from the cache without evaluating its inputs when the step's
cache key (made from its inputs' keys, not their results) has a record. So a `--cache-from`
whose `mode=min` cache holds the final stage's records builds nothing of a build stage whose
records it left out: the final stage's `COPY --from=build` hits on the build stage's key.

Here, with an imported cache, such a side stage (needed, but not one the target is FROM) is
first probed: its steps run with `probe` set, so that a miss gives an unresolved state (the
right key, no layer) instead of running. A probe where every step hits is built at once (as
cheap: nothing runs, no blob moves), so its steps show as CACHED. Otherwise the stage waits,
silent, until a `COPY --from` of it misses and calls `realize`; a stage never realized is
not in the log, as BuildKit shows no step it never loaded.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from builder.engine.remote_cache import CacheLink
from builder.engine.state import ImageState
from builder.recipe import BuildPlan, Stage


class StageRunner(Protocol):
    """What of the build loop (engine._Run) this needs."""

    number: int
    steps: int
    cached_steps: int
    probing: bool
    cache: CacheLink
    done: dict[str, ImageState]

    def muted(self) -> AbstractContextManager[None]:
        """No events while inside: a probe is not in the log."""
        ...

    def stage(self, stage: Stage) -> ImageState: ...


def finished(done: dict[str, ImageState], index: int, stage: Stage, state: ImageState) -> None:
    """A stage's state, where later steps look it up: by index text and by name."""
    done[str(index)] = state
    if stage.name:
        done[stage.name] = state


def side_stages(build_plan: BuildPlan, target_chain: list[int]) -> frozenset[int]:
    """The needed stages whose layers the image does not have: only copied from."""
    return frozenset(build_plan.needed) - frozenset(target_chain)


class LazyStages:
    def __init__(self, run: StageRunner, build_plan: BuildPlan) -> None:
        self._run = run
        self._plan = build_plan
        self._reserved: dict[int, int] = {}  # a waiting stage's step numbers start here
        self._by_key: dict[str, int] = {}  # a waiting stage's final key -> its index

    def probe(self, index: int) -> ImageState:
        run, stage = self._run, self._plan.stages[index]
        start, counts = run.number, (run.steps, run.cached_steps)
        run.probing = True
        try:
            with run.muted():
                state = run.stage(stage)
        finally:
            run.probing = False
            run.steps, run.cached_steps = counts
        if not state.unresolved:
            run.number = start
            return run.stage(stage)
        self._reserved[index] = start
        self._by_key[state.key] = index
        return state

    def realize(self, state: ImageState) -> ImageState:
        """The built stage an unresolved state stands for (built now, if it waits)."""
        if not state.unresolved:
            return state
        return self._realize(self._by_key[state.key])

    def _realize(self, index: int) -> ImageState:
        run, stage = self._run, self._plan.stages[index]
        current = run.done[str(index)]
        if not current.unresolved:
            return current
        if stage.base_stage is not None:  # its base may be waiting too
            self._realize(stage.base_stage)
        saved = run.number, run.cache.stage
        run.number, run.cache.stage = self._reserved[index], index
        try:
            state = run.stage(stage)
        finally:
            run.number, run.cache.stage = saved
        finished(run.done, index, stage, state)
        return state
