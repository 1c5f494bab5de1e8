"""Independent stages at once (engine/scheduler), driven with the fake executor: which plans
can overlap, that stages really run at the same time (a barrier only both can pass), that
the events name each step's stage, and that a failure starts no further stage."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from builder.engine import engine as engine_module
from builder.engine.events import StepDone, StepOutput, StepStarted
from builder.engine.executor import OverlayRoot, Process
from builder.engine.scheduler import can_overlap
from builder.engine.stopper import Stopper
from builder.errors import StepFailed
from builder.recipe import load, plan
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import make_context, run_build

FAN_IN = """\
FROM scratch AS a
RUN work a
FROM scratch AS b
RUN work b
FROM scratch
COPY --from=a /a /a
COPY --from=b /b /b
"""


@pytest.mark.parametrize(
    ("recipe", "target", "expected"),
    [
        (FAN_IN, None, True),
        (FAN_IN, "a", False),  # b is not needed: one stage
        ("FROM scratch AS a\nRUN x\nFROM a AS b\nRUN y\nFROM b\nRUN z\n", None, False),
        ("FROM scratch AS a\nRUN x\nFROM scratch\nCOPY --from=a /x /x\n", None, False),
        (
            "FROM scratch AS a\nRUN x\nFROM scratch AS b\nRUN --mount=from=a,target=/a true\n",
            "b",
            False,
        ),
        ("FROM scratch AS a\nFROM scratch AS b\nFROM a\nCOPY --from=b /x /x\n", None, True),
    ],
)
def test_which_plans_have_stages_that_can_overlap(
    recipe: str, target: str | None, expected: bool
) -> None:
    assert can_overlap(plan(load(recipe), {}, target)) is expected


class Meeting(FakeExecutor):
    """`work a` and `work b` each wait for the other inside their RUN: only stages that
    run at the same time get through."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=10)

    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        if process.argv[-1].startswith("work "):
            self.barrier.wait()
        return super().run(root, process, output)


def scripted(fake: FakeExecutor) -> FakeExecutor:
    fake.on("work a", Effect(files={"/a": "a"}, output=("made a",)))
    fake.on("work b", Effect(files={"/b": "b"}, output=("made b",)))
    return fake


def test_independent_stages_run_at_the_same_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", FAN_IN)
    built = run_build(store, context, scripted(Meeting()), monkeypatch, jobs=2)
    started = [e for e in built.events if isinstance(e, StepStarted)]
    assert all(e.concurrent for e in started)
    places = sorted((e.number, e.stage, e.stage_step, e.stage_steps) for e in started)
    assert places == [
        (1, "a", 1, 2),
        (2, "a", 2, 2),
        (3, "b", 1, 2),
        (4, "b", 2, 2),
        (5, "2", 1, 3),
        (6, "2", 2, 3),
        (7, "2", 3, 3),
    ]
    output = {e.line: e.stage for e in built.events if isinstance(e, StepOutput)}
    assert output == {"made a": "a", "made b": "b"}
    assert {e.number: e.stage for e in built.events if isinstance(e, StepDone)}[4] == "b"


def test_jobs_1_builds_in_order(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", FAN_IN)
    fake = scripted(Meeting())
    fake.barrier = threading.Barrier(2, timeout=0.5)  # nobody else comes: it breaks
    with pytest.raises(threading.BrokenBarrierError):
        run_build(store, context, fake, monkeypatch, jobs=1)
    built = run_build(store, context, scripted(FakeExecutor()), monkeypatch, jobs=1)
    started = [e for e in built.events if isinstance(e, StepStarted)]
    assert [e.number for e in started] == list(range(1, 8))
    assert not any(e.concurrent for e in started)


class FailFast(FakeExecutor):
    """`work a` fails at once; `work b` ends successfully once the build is stopping (the
    failure is known: a fixed delay was not enough under load, when b ended first and the
    free slot rightly went to c)."""

    def __init__(self, stoppers: list[Stopper]) -> None:
        super().__init__()
        self.stoppers = stoppers

    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        if process.argv[-1] == "work b":
            deadline = time.monotonic() + 10
            while not self.stoppers[-1].stopped and time.monotonic() < deadline:
                time.sleep(0.01)
            assert self.stoppers[-1].stopped
        return super().run(root, process, output)


def fail_fast(monkeypatch: pytest.MonkeyPatch) -> FailFast:
    """A FailFast executor watching the stoppers the builds it serves make."""
    stoppers: list[Stopper] = []

    class Noted(Stopper):
        def __init__(self) -> None:
            super().__init__()
            stoppers.append(self)

    monkeypatch.setattr(engine_module, "Stopper", Noted)
    return FailFast(stoppers)


def test_a_failure_starts_no_further_stage_and_is_the_error(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = FAN_IN.replace("FROM scratch\n", "FROM scratch AS c\nRUN work c\nFROM scratch\n")
    context = make_context(tmp_path / "ctx", recipe)
    fake = fail_fast(monkeypatch)
    fake.on("work a", Effect(status=3, output=("broken",)))
    fake.on("work b", Effect(files={"/b": "b"}))
    fake.on("work c", Effect(files={"/c": "c"}))
    with pytest.raises(StepFailed, match="work a"):
        run_build(store, context, fake, monkeypatch, jobs=2)
    assert [p.argv[-1] for p in fake.runs] == ["work a", "work b"]  # c never started
