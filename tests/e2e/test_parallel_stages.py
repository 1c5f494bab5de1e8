"""`build --jobs N`: independent stages build at once, through the real CLI on the real
kernel. They overlap in time (by the JSON events' times, not by a wall clock), the image is
the one a sequential and a --no-cache build make, each log line names its stage, and the
first failure (or a signal) stops the other stages leaving no process, mount, scratch dir
or cgroup behind."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.runtime_support import kill_leftovers, leftovers, popen, processes_with
from tests.e2e.support import Builder, make_context

EPOCH = ("--source-date-epoch", "1700000000")  # image IDs that do not depend on the clock

# Three stages that depend on nothing of each other, and one that copies from all three.
FAN_IN = """\
FROM busybox AS a
RUN sleep 1 && echo made-a > /a
FROM busybox AS b
RUN sleep 1 && echo made-b > /b
FROM busybox AS c
RUN sleep 1 && echo made-c > /c
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
"""


def fresh(busybox_store: Path, where: Path) -> Builder:
    """A store of its own holding only busybox: a build there runs every step."""
    shutil.copytree(busybox_store, where, symlinks=True)
    return Builder(where)


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def spans(records: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each stage's (start, end): its FROM's StepStarted to its last step's StepDone."""
    first: dict[str, float] = {}
    last: dict[str, int] = {}
    for r in records:
        if r["event"] == "StepStarted":
            first.setdefault(r["stage"], r["time"])
            last[r["stage"]] = r["number"]
    done = {r["number"]: r["time"] for r in records if r["event"] == "StepDone"}
    return {stage: (first[stage], done[last[stage]]) for stage in first}


def image_id(records: list[dict[str, Any]]) -> str:
    (built,) = [r for r in records if r["event"] == "BuildDone"]
    return str(built["image_id"])


def test_independent_stages_overlap_and_make_the_same_image(
    busybox_store: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, FAN_IN)
    runs = {}
    for name, flags in {
        "parallel": ("--jobs", "3"),
        "sequential": ("--jobs", "1"),
        "no-cache": ("--jobs", "3", "--no-cache"),
    }.items():
        builder = fresh(busybox_store, tmp_path / name)
        result = builder("build", "--progress", "json", *EPOCH, *flags, context)
        runs[name] = events(result.stderr)

    parallel = spans(runs["parallel"])
    starts = [parallel[s][0] for s in "abc"]
    ends = [parallel[s][1] for s in "abc"]
    assert max(starts) < min(ends), parallel  # all three were running at one moment
    assert parallel["3"][0] >= max(ends)  # the last stage waits for what it copies
    sequential = spans(runs["sequential"])
    order = [sequential[s] for s in ("a", "b", "c", "3")]
    assert all(one[1] <= two[0] for one, two in itertools.pairwise(order))
    # Each stage keeps its sequential step numbers: the events differ only in order.
    numbered = {
        name: sorted((r["number"], r["stage"]) for r in rs if r["event"] == "StepStarted")
        for name, rs in runs.items()
    }
    assert numbered["parallel"] == numbered["sequential"]

    ids = {name: image_id(records) for name, records in runs.items()}
    assert ids["parallel"] == ids["sequential"] == ids["no-cache"], ids
    built = next(r for r in runs["parallel"] if r["event"] == "BuildDone")
    assert (built["steps"], built["cached_steps"]) == (6, 0)


def test_plain_log_names_the_stage_of_each_line(builder: Builder, tmp_path: Path) -> None:
    recipe = FAN_IN.replace("sleep 1 &&", "echo hello && sleep 1 &&")
    context = make_context(tmp_path, recipe)
    lines = builder("build", "--progress", "plain", "--jobs", "3", context).stderr.splitlines()
    for stage in "abc":
        assert f"[{stage} 1/2] FROM busybox AS {stage}" in lines
        assert f"[{stage} 2/2] RUN echo hello && sleep 1 && echo made-{stage} > /{stage}" in lines
        assert f"{stage} | hello" in lines
        assert any(line.startswith(f"[{stage} 2/2] DONE ") for line in lines), lines
    assert "[stage-3 4/4] COPY --from=c /c /c" in lines
    assert "hello" not in lines  # no output line without its stage


def test_jobs_1_and_a_single_stage_keep_the_sequential_log(
    builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, FAN_IN.replace("sleep 1 && ", ""))
    lines = builder("build", "--progress", "plain", "--jobs", "1", context).stderr.splitlines()
    assert lines[:4] == [
        "[1/10] FROM busybox AS a",
        "[1/10] CACHED",
        "[2/10] RUN echo made-a > /a",
        "[2/10] DONE " + lines[3].rsplit(" ", 1)[1],
    ]
    single = make_context(tmp_path / "single", "FROM busybox\nRUN echo one-stage\n")
    lines = builder("build", "--progress", "plain", "--jobs", "4", single).stderr.splitlines()
    assert lines[2:4] == ["[2/2] RUN echo one-stage", "one-stage"]


SLOW = "sleep 67 && echo h9par-slow-{n}"
FAILING = """\
FROM busybox AS broken
RUN sleep 1 && echo about-to-fail && exit 3
FROM busybox AS slow
RUN {slow}
FROM busybox
COPY --from=broken /etc/hostname /x
COPY --from=slow /etc/hostname /y
"""


def test_a_failure_stops_the_other_stages_and_leaves_nothing(
    busybox_store: Path, tmp_path: Path, cgroup_parent: str
) -> None:
    context = make_context(tmp_path, FAILING.format(slow=SLOW.format(n=1)))
    flags = ("--progress", "plain", "--cgroup-parent", cgroup_parent)  # every RUN's cgroup
    builder = fresh(busybox_store, tmp_path / "parallel")
    try:
        started = time.monotonic()
        result = builder("build", *flags, "--jobs", "2", context, check=False)
        took = time.monotonic() - started
        assert "[slow 2/2] RUN sleep 67" in result.stderr  # it was running: then killed
        assert took < 40, result.stderr  # not the 67 s of its sleep
        assert leftovers(builder, "h9par-slow-1") == {"processes": [], "mounts": [], "tmp": []}
    finally:
        kill_leftovers(builder)
    # The error and the exit code are the sequential build's, where the slow stage never ran.
    sequential = fresh(busybox_store, tmp_path / "sequential")
    expected = sequential("build", *flags, "--jobs", "1", context, check=False)
    assert expected.status == 5
    assert result.status == expected.status
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == [line for line in expected.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Dockerfile:2:" in error[0], error
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_stage_and_leaves_nothing(
    busybox_store: Path, tmp_path: Path, cgroup_parent: str, signum: signal.Signals
) -> None:
    token = f"h9par-sig-{signum}"
    recipe = f"""\
FROM busybox AS one
RUN sleep 68 && echo {token}
FROM busybox AS two
RUN sleep 69 && echo {token}
FROM busybox
COPY --from=one /etc/hostname /x
COPY --from=two /etc/hostname /y
"""
    context = make_context(tmp_path, recipe)
    builder = fresh(busybox_store, tmp_path / "store")
    flags = ("--progress", "plain", "--cgroup-parent", cgroup_parent, "--jobs", "2")
    proc = popen(builder, "build", *flags, str(context))
    try:
        deadline = time.monotonic() + 60
        while len(processes_with(f"sleep 68 && echo {token}", f"sleep 69 && echo {token}")) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "the RUNs never started"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=40)
        assert proc.returncode == 130, stderr
        assert stderr.decode().splitlines()[-1] == "error: interrupted"
        assert leftovers(builder, token) == {"processes": [], "mounts": [], "tmp": []}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_leftovers(builder)
