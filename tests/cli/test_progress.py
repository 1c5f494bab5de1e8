"""The renderers: plain lines for CI logs, JSON lines for machines."""

from __future__ import annotations

import io
import json

from builder.cli.progress import TtyRenderer, renderer
from builder.engine.events import BuildDone, BuildWarning, StepDone, StepOutput, StepStarted
from builder.registry.events import (
    BlobDone,
    BlobProgress,
    BlobStarted,
    TransferDone,
    TransferStarted,
)

EVENTS = [
    BuildWarning("build args not consumed by any ARG: X"),
    StepStarted("0", 1, 2, "FROM busybox:latest"),
    StepDone(1, cached=True, seconds=0.0),
    StepStarted("0", 2, 2, "RUN echo hi"),
    StepOutput(2, "hi"),
    StepDone(2, cached=False, seconds=0.25),
    BuildDone("sha256:abc", "sha256:def", ("hello:latest",), 1.5, 1, 0),
]


def test_plain() -> None:
    out = io.StringIO()
    report = renderer("plain", out)
    for event in EVENTS:
        report(event)
    assert out.getvalue().splitlines() == [
        "warning: build args not consumed by any ARG: X",
        "[1/2] FROM busybox:latest",
        "[1/2] CACHED",
        "[2/2] RUN echo hi",
        "hi",
        "[2/2] DONE 0.25s",
        "built sha256:abc in 1.50s (0/1 steps cached)",
        "tagged hello:latest",
    ]


def test_json_lines() -> None:
    out = io.StringIO()
    report = renderer("json", out)
    for event in EVENTS:
        report(event)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in records] == [type(e).__name__ for e in EVENTS]
    assert isinstance(records[4].pop("time"), float)  # when it happened, Unix seconds
    assert records[4] == {"event": "StepOutput", "number": 2, "line": "hi", "stage": ""}
    assert records[-1]["tags"] == ["hello:latest"]


# Two stages built at once (--jobs): their steps interleave.
CONCURRENT = [
    StepStarted("0", 1, 5, "FROM busybox", stage_step=1, stage_steps=2, concurrent=True),
    StepStarted("app", 3, 5, "FROM busybox AS app", 1, 3, concurrent=True),
    StepDone(1, cached=True, seconds=0.0, stage="0"),
    StepStarted("0", 2, 5, "RUN echo a", stage_step=2, stage_steps=2, concurrent=True),
    StepDone(3, cached=True, seconds=0.0, stage="app"),
    StepStarted("app", 4, 5, "RUN echo b", stage_step=2, stage_steps=3, concurrent=True),
    StepOutput(4, "b", stage="app"),
    StepOutput(2, "a", stage="0"),
    StepDone(2, cached=False, seconds=1.0, stage="0"),
    StepDone(4, cached=False, seconds=1.5, stage="app"),
]


def test_plain_names_the_stage_of_interleaved_steps() -> None:
    out = io.StringIO()
    report = renderer("plain", out)
    for event in CONCURRENT:
        report(event)
    assert out.getvalue().splitlines() == [
        "[stage-0 1/2] FROM busybox",
        "[app 1/3] FROM busybox AS app",
        "[stage-0 1/2] CACHED",
        "[stage-0 2/2] RUN echo a",
        "[app 1/3] CACHED",
        "[app 2/3] RUN echo b",
        "app | b",
        "stage-0 | a",
        "[stage-0 2/2] DONE 1.00s",
        "[app 2/3] DONE 1.50s",
    ]


def test_tty_names_the_stage_of_interleaved_output() -> None:
    out = io.StringIO()
    report = TtyRenderer(out)
    for event in CONCURRENT:
        report(event)
    assert "app | b\n" in out.getvalue()
    assert "stage-0 | a\n" in out.getvalue()


def test_json_carries_the_stage() -> None:
    out = io.StringIO()
    report = renderer("json", out)
    for event in CONCURRENT:
        report(event)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[1]["stage"] == "app" and records[1]["stage_step"] == 1
    assert records[6]["stage"] == "app" and records[6]["line"] == "b"
    assert records[-1]["stage"] == "app" and records[-1]["event"] == "StepDone"


def test_auto_is_plain_off_a_terminal() -> None:
    out = io.StringIO()
    renderer("auto", out)(StepStarted("0", 1, 1, "RUN x"))
    assert out.getvalue() == "[1/1] RUN x\n"


TRANSFER = [
    TransferStarted("pull", "busybox:latest", "docker.io"),
    BlobStarted("pull", "sha256:" + "ab" * 32, 2_500_000, "layer"),
    BlobProgress("sha256:" + "ab" * 32, 1_000_000, 2_500_000),
    BlobDone("pull", "sha256:" + "ab" * 32, 2_500_000, "layer", "downloaded", 0.5),
    BlobStarted("pull", "sha256:" + "cd" * 32, 300, "config"),
    BlobDone("pull", "sha256:" + "cd" * 32, 300, "config", "present", 0.0),
    TransferDone("pull", "busybox:latest", "sha256:" + "ef" * 32, 0.75),
]


def test_plain_transfers_are_one_line_per_blob() -> None:
    out = io.StringIO()
    report = renderer("plain", out)
    for event in TRANSFER:
        report(event)
    assert out.getvalue().splitlines() == [
        "pull busybox:latest from docker.io",
        "  layer abababababab 2.5MB downloaded 0.50s",
        "  config cdcdcdcdcdcd 300B present 0.00s",
        f"pulled busybox:latest sha256:{'ef' * 32} in 0.75s",
    ]


def test_json_transfers_are_every_event() -> None:
    out = io.StringIO()
    report = renderer("json", out)
    for event in TRANSFER:
        report(event)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in records] == [type(e).__name__ for e in TRANSFER]
    assert isinstance(records[2].pop("time"), float)
    assert records[2] == {
        "event": "BlobProgress",
        "digest": "sha256:" + "ab" * 32,
        "done": 1_000_000,
        "size": 2_500_000,
    }


def test_tty_transfers_draw_a_bar_per_blob_and_keep_the_plain_lines() -> None:
    out = io.StringIO()
    report = renderer("tty", out)
    assert isinstance(report, TtyRenderer)
    report(TRANSFER[0])
    report(TRANSFER[1])
    report(TRANSFER[2])
    bar = report.blobs["sha256:" + "ab" * 32]
    assert (bar.n, bar.total) == (1_000_000, 2_500_000)
    for event in TRANSFER[3:]:
        report(event)
    assert report.blobs == {}
    text = out.getvalue()
    assert "  layer abababababab 2.5MB downloaded 0.50s" in text
    assert "pulled busybox:latest" in text
