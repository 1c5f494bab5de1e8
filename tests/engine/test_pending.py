"""A RUN's layer written while the next step runs (engine/pending): the next RUN mounts its
upper dir as it is, and the build writes the image, layers and records that a build
committing each RUN before the next step writes; a failure after it keeps its record."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.engine.executor import OverlayRoot, Process
from builder.engine.state import ImageState
from builder.engine.steps import copy as copy_module
from builder.engine.steps import run as run_module
from builder.engine.steps.base import StepContext
from builder.engine.steps.layer_step import commit_layer
from builder.errors import StepFailed
from builder.image.descriptor import Descriptor
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import files_of, image, make_context, run_build
from tests.engine.test_scheduler import fail_fast

RECIPE = """\
FROM scratch
RUN one
ENV X=1
RUN two
RUN three
WORKDIR /w
RUN four
COPY f /f
RUN five
"""


def _scripted() -> FakeExecutor:
    fake = FakeExecutor()
    fake.on("one", Effect(files={"/a/one": "1", "/keep": "k"}))
    fake.on("two", Effect(files={"/a/two": "2"}, delete=("/keep",)))
    fake.on("three", Effect(files={"/a/one": "1 again"}))
    fake.on("four", Effect())  # an empty layer
    fake.on("five", Effect(files={"/five": "5"}))
    return fake


def _records(store: Store) -> dict[str, bytes]:
    """The steps' records (and the recipe's). Not COPY's frame index nor the context's memo
    and snapshot, which no RUN writes and which differ between any two builds (a check, a
    time)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(store.paths.cache.glob("*.json"))
        if not p.name.startswith(("frames-", "context-memo-", "context-snapshot-"))
    }


def test_the_image_and_records_are_those_of_runs_committed_in_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", RECIPE, {"f": "f"})
    epoch = 1_700_000_000  # the steps' times, so two builds can be compared byte for byte
    behind = Store.open(tmp_path / "behind")
    built = run_build(behind, context, _scripted(), monkeypatch, source_date_epoch=epoch)

    def in_turn(
        state: ImageState,
        ctx: StepContext,
        key: str,
        created_by: str,
        root: OverlayRoot,
        where: str = "",
        *,
        previous: Descriptor | None = None,
        keep_frames: bool = False,
        then: Callable[[], object] | None = None,
    ) -> ImageState:
        done = commit_layer(
            state, ctx, key, created_by, root, previous=previous, keep_frames=keep_frames
        )
        if then is not None:
            ctx.store.finishing.submit(then)
        return done

    monkeypatch.setattr(run_module, "commit_layer_behind", in_turn)
    monkeypatch.setattr(copy_module, "commit_layer_behind", in_turn)
    in_order = Store.open(tmp_path / "in-turn")
    expected = run_build(in_order, context, _scripted(), monkeypatch, source_date_epoch=epoch)

    assert built.result.image_id == expected.result.image_id
    assert _records(behind) == _records(in_order)
    config, layers = image(behind, built)
    assert len(layers) == len(config.diff_ids) == 7
    assert files_of(behind, layers[0]) == {"a": None, "a/one": b"1", "keep": b"k"}
    assert list(behind.paths.tmp.iterdir()) == []


def _noting_lowers(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[FakeExecutor, list[tuple[Path, ...]]]:
    """A scripted executor, and the lower dirs of each RUN it runs, in order."""
    fake = _scripted()
    seen: list[tuple[Path, ...]] = []
    run = fake.run

    def noting(root: OverlayRoot, process: Process, output: int) -> int:
        seen.append(root.lowers)
        return run(root, process, output)

    monkeypatch.setattr(fake, "run", noting)
    return fake, seen


def test_the_next_run_mounts_the_upper_dir_of_the_run_before_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, seen = _noting_lowers(monkeypatch)
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN one\nRUN two\nRUN three\n")
    built = run_build(store, context, fake, monkeypatch)
    one, two, three = seen
    assert one == ()
    # RUN two ran on RUN one's upper dir, not yet in root/layers; RUN three on its
    # adopted dir, and on RUN two's upper.
    assert len(two) == 1 and two[0].parent == store.paths.tmp
    assert three[0].parent == store.paths.layers and three[1].parent == store.paths.tmp
    config, _layers = image(store, built)
    assert [p.name for p in three[:1]] == [config.diff_ids[0].hex]


def test_the_next_run_mounts_the_upper_dir_of_the_copy_before_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COPY's layer is written behind the next step too (a big context's layer beside
    the RUN after it), and its lineage is recorded once its step's record is."""
    fake, seen = _noting_lowers(monkeypatch)
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /f\nRUN one\n", {"f": "f"})
    built = run_build(store, context, fake, monkeypatch)
    (lowers,) = seen
    assert len(lowers) == 1 and lowers[0].parent == store.paths.tmp  # not adopted yet
    config, layers = image(store, built)
    assert files_of(store, layers[0]) == {"f": b"f"}
    assert (store.paths.layers / config.diff_ids[0].hex).is_dir()
    (context / "f").write_text("g")
    again = run_build(store, context, _scripted(), monkeypatch)
    assert again.cached == [True, False, False]
    _config, layers = image(store, again)
    assert files_of(store, layers[0]) == {"f": b"g"}


def test_a_failed_step_keeps_the_record_of_the_run_before_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _scripted()
    fake.on("false", Effect(status=3))
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN one\nRUN false\n")
    with pytest.raises(StepFailed):
        run_build(store, context, fake, monkeypatch)
    assert list(store.paths.tmp.iterdir()) == []
    fake.on("false", Effect())
    again = run_build(store, context, fake, monkeypatch)
    assert again.cached == [True, True, False]  # FROM, RUN one (kept), RUN false
    assert [p.argv[-1] for p in fake.runs] == ["one", "false", "false"]


def test_a_stage_stopped_by_another_s_failure_keeps_its_run_s_record(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes as the next step starts (the stopper's check), with the RUN's layer
    still pending: it is written and recorded, and no writer thread outlives the build."""
    recipe = (
        "FROM scratch AS a\nRUN work a\nFROM scratch AS b\nRUN work b\nRUN more b\n"
        "FROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
    )
    context = make_context(tmp_path / "ctx", recipe)
    fake = fail_fast(monkeypatch)
    fake.on("work a", Effect(status=3))
    fake.on("work b", Effect(files={"/b": "b"}))
    fake.on("more b", Effect())
    with pytest.raises(StepFailed, match="work a"):
        run_build(store, context, fake, monkeypatch, jobs=2)
    assert [p.argv[-1] for p in fake.runs] == ["work a", "work b"]  # `more b` never ran
    assert not [t for t in threading.enumerate() if t.name == "engine-worker"]
    assert list(store.paths.tmp.iterdir()) == []
    fake = _scripted()
    fake.on("work a", Effect(files={"/a": "a"}))
    fake.on("more b", Effect())
    again = run_build(store, context, fake, monkeypatch, jobs=1)
    assert "work b" not in [p.argv[-1] for p in fake.runs]  # its record was kept
    assert again.result.image_id
