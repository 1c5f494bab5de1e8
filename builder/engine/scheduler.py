"""Stages that do not depend on each other build at once (`--jobs N`), as BuildKit's solver
runs independent vertices of its graph in parallel.

A stage starts once every stage it depends on (its base stage, COPY --from, RUN --mount
from=: `Stage.depends_on`) is done, at most N at a time, on threads: the work of a step is
in subprocesses (the sandbox), in zstd's workers or in file I/O, all of which release the
GIL. Each stage keeps the step numbers it has in the sequential order, so events (and the
image) are the same whichever stage finishes first; a renderer names the stage on its
lines (`StepStarted.concurrent`).

The first failure stops the build: no step starts after it, and the stopper kills every
RUN process still running (engine/stopper). Once every stage has ended, the failure is
raised as the sequential build would raise it. SIGINT, SIGTERM and SIGHUP stop the build
the same way, and end it as an interrupted build (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Protocol

from builder.engine.events import Event, Reporter
from builder.engine.lazystages import finished
from builder.engine.remote_cache import CacheLink
from builder.engine.state import ImageState
from builder.engine.stopper import Stopper
from builder.recipe import BuildPlan, Stage

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StageRunner(Protocol):
    """What of the build loop (engine._Run) this needs."""

    steps: int
    cached_steps: int
    cache: CacheLink
    done: dict[str, ImageState]

    @property
    def report(self) -> Reporter: ...

    def lane(self, number: int, report: Reporter) -> StageRunner:
        """A runner for one stage on a thread of its own, its steps numbered after
        `number`; the build's other parts are shared."""
        ...

    def stage(self, stage: Stage) -> ImageState: ...


def can_overlap(build_plan: BuildPlan) -> bool:
    """Whether two of the needed stages depend on each other in no way (so may run at once)."""
    above: dict[int, set[int]] = {}  # each needed stage's dependencies, transitively
    for index in build_plan.needed:  # dependencies come first
        deps: set[int] = set()
        for dep in build_plan.stages[index].depends_on:
            deps |= {dep, *above.get(dep, ())}
        above[index] = deps
    needed = build_plan.needed
    return any(a not in above[b] for i, b in enumerate(needed) for a in needed[:i])


def _serialized(report: Reporter) -> Reporter:
    """A reporter called from one thread at a time (the stages' and their output pumps')."""
    lock = threading.Lock()

    def serial(event: Event) -> None:
        with lock:
            report(event)

    return serial


class _Interrupt:
    """SIGINT, SIGTERM and SIGHUP while the stages run: stop them, then end as interrupted."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper
        self.signum: int | None = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.stopper.stop()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        saved: dict[signal.Signals, object] = {}
        if threading.current_thread() is threading.main_thread():  # else not ours to take
            for sig in _SIGNALS:
                saved[sig] = signal.signal(sig, self._handle)
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]


def build_stages(run: StageRunner, build_plan: BuildPlan, jobs: int, stopper: Stopper) -> None:
    """Build the plan's needed stages, `jobs` at a time, into `run.done`."""
    # Here, not at the top: every build imports this module, and a one-stage or cached one
    # must not pay for concurrent.futures (issue 9: start-up).
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    report = _serialized(run.report)
    first: dict[int, int] = {}  # each stage's step numbers follow this one
    number = 0
    for index in build_plan.needed:
        first[index] = number
        number += len(build_plan.stages[index].instructions) + 1

    def work(index: int) -> tuple[ImageState, int, int]:
        run.cache.stage = index  # this thread's (CacheLink keeps it per thread)
        lane = run.lane(first[index], report)
        state = lane.stage(build_plan.stages[index])
        return state, lane.steps, lane.cached_steps

    pending = list(build_plan.needed)
    running: dict[Future[tuple[ImageState, int, int]], int] = {}
    built: set[int] = set()
    failure: BaseException | None = None
    interrupt = _Interrupt(stopper)
    with ThreadPoolExecutor(jobs, thread_name_prefix="stage") as pool, interrupt.installed():
        try:
            while pending or running:
                for index in list(pending):
                    if stopper.stopped or len(running) >= jobs:
                        break
                    if build_plan.stages[index].depends_on <= built:
                        pending.remove(index)
                        running[pool.submit(work, index)] = index
                if not running:
                    break  # stopped: what was pending never starts
                # A timeout, so that a signal's handler runs while the stages do.
                ended, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in ended:
                    index = running.pop(future)
                    try:
                        state, steps, cached = future.result()
                    except Exception as err:  # raised below, once every stage has ended
                        if failure is None and not stopper.stopped:
                            failure = err
                        stopper.stop()
                        continue
                    finished(run.done, index, build_plan.stages[index], state)
                    built.add(index)
                    run.steps += steps
                    run.cached_steps += cached
        finally:
            stopper.stop()  # a no-op when all went well; else nothing runs on
    if interrupt.signum is not None:
        raise KeyboardInterrupt
    if failure is not None:
        raise failure
