"""The engine, driven with the fake executor: which stages run and in what order, what
the cache spares on a rebuild, and how a failing step ends the build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.engine.events import StepOutput
from builder.errors import StepFailed
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import files_of, image, make_context, run_build

MULTI_STAGE = """\
FROM scratch AS unused
RUN never
FROM scratch AS tools
RUN make tools
FROM tools AS app
RUN make app
FROM scratch
COPY --from=app /app /app
COPY --from=tools /tools /tools
"""


@pytest.fixture
def scripted(fake: FakeExecutor) -> FakeExecutor:
    fake.on("make tools", Effect(files={"/tools": "t"}))
    fake.on("make app", Effect(files={"/app": "a"}))
    return fake


def test_stages_run_in_dependency_order_and_unneeded_ones_not_at_all(
    store: Store, scripted: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", MULTI_STAGE)
    built = run_build(store, context, scripted, monkeypatch)
    assert built.stages == ["tools", "app", "3"]
    assert [p.argv[-1] for p in scripted.runs] == ["make tools", "make app"]
    _config, layers = image(store, built)
    assert [files_of(store, layer) for layer in layers] == [{"app": b"a"}, {"tools": b"t"}]


def test_target_builds_that_stage_and_what_it_needs_only(
    store: Store, scripted: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", MULTI_STAGE)
    built = run_build(store, context, scripted, monkeypatch, target="app")
    assert built.stages == ["tools", "app"]
    _config, layers = image(store, built)
    assert [files_of(store, layer) for layer in layers] == [{"tools": b"t"}, {"app": b"a"}]


def test_a_second_build_is_all_cache_hits_and_runs_nothing(
    store: Store, scripted: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", MULTI_STAGE)
    first = run_build(store, context, scripted, monkeypatch)
    runs, calls = len(scripted.runs), len(scripted.calls)
    second = run_build(store, context, scripted, monkeypatch)
    assert (len(scripted.runs), len(scripted.calls)) == (runs, calls)
    assert all(second.cached) and second.result.cached_steps == second.result.steps
    assert not all(first.cached)
    assert second.result.image_id == first.result.image_id
    assert second.keys == first.keys


def test_no_cache_runs_every_step_again(
    store: Store, scripted: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", MULTI_STAGE)
    run_build(store, context, scripted, monkeypatch)
    again = run_build(store, context, scripted, monkeypatch, no_cache=True)
    assert [p.argv[-1] for p in scripted.runs] == ["make tools", "make app"] * 2
    assert (again.result.steps, again.result.cached_steps) == (4, 0)


def test_a_changed_file_reruns_from_its_copy_on(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = "FROM scratch\nCOPY a /a\nRUN one\nCOPY b /b\nRUN two\nENV X=1\n"
    fake.on("one", Effect(files={"/one": "1"}))
    fake.on("two", Effect(files={"/two": "2"}))
    context = make_context(tmp_path / "ctx", recipe, {"a": "a", "b": "b"})
    first = run_build(store, context, fake, monkeypatch)
    (context / "b").write_text("b, changed")
    second = run_build(store, context, fake, monkeypatch)
    assert [p.argv[-1] for p in fake.runs] == ["one", "two", "two"]
    #                   FROM  COPY a RUN one COPY b  RUN two ENV
    assert second.cached == [True, True, True, False, False, False]
    assert second.keys[:2] == first.keys[:2]
    assert all(a[1] != b[1] for a, b in zip(first.keys[2:], second.keys[2:], strict=True))
    _config, layers = image(store, second)
    assert files_of(store, layers[2]) == {"b": b"b, changed"}


def test_a_failing_run_stops_the_build_with_its_status_and_last_line(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("false", Effect(files={"/half": "x"}, output=("working", "it broke"), status=3))
    fake.on("after", Effect())
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN false\nRUN after\n")
    with pytest.raises(StepFailed) as caught:
        run_build(store, context, fake, monkeypatch)
    assert caught.value.status == 3
    assert caught.value.location is not None and caught.value.location.line == 2
    assert (
        'RUN false: process "/bin/sh -c false" did not complete successfully: exit code: 3'
        in str(caught.value)
    )
    assert [p.argv[-1] for p in fake.runs] == ["false"]  # nothing after it ran
    # No record of the failed step (only the parsed recipe's), and its dirs are gone.
    assert [key[:7] for key in store.cache.stored_keys()] == ["recipe-"]
    assert list(store.paths.tmp.iterdir()) == []


def test_step_output_is_reported_line_by_line(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("talk", Effect(output=("one", "two")))
    context = make_context(tmp_path / "ctx", "FROM scratch\nRUN talk\n")
    built = run_build(store, context, fake, monkeypatch)
    assert [(e.number, e.line) for e in built.events if isinstance(e, StepOutput)] == [
        (2, "one"),
        (2, "two"),
    ]


def test_a_fully_cached_build_never_imports_the_sandbox_machinery(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up time: the sandbox (and its syscall tables) load only when a step runs. The
    value types and the passwd reader the COPY writer shares are all a cached build loads."""
    fake.on("make", Effect(files={"/out": "x"}))
    recipe = "FROM scratch\nCOPY a /a\nRUN make\nWORKDIR /w\n"
    context = make_context(tmp_path / "ctx", recipe, {"a": "a"})
    run_build(store, context, fake, monkeypatch)
    probe = f"""
import sys
from pathlib import Path
from builder.engine.engine import build
from builder.engine.options import BuildOptions
from builder.store import Store
result = build(BuildOptions(context=Path({str(context)!r}), compression="gzip"),
               Store.open(Path({str(store.root)!r})))
assert result.cached_steps == result.steps, result
print(sorted(m for m in sys.modules if m.startswith("builder.sandbox")))
"""
    path = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    # The package, its plain value types (the spec, its limits, its Security value and the
    # capability names that value defaults to) and the passwd reader; no namespace
    # machinery, no seccomp, no cgroups.
    assert done.stdout.strip() == str(
        [
            "builder.sandbox",
            "builder.sandbox.capabilities",
            "builder.sandbox.limits",
            "builder.sandbox.security",
            "builder.sandbox.spec",
            "builder.sandbox.users",
        ]
    )
