"""The renderers: plain lines for CI logs, JSON lines for machines."""

from __future__ import annotations

import io
import json

from builder.cli.progress import renderer
from builder.engine.events import BuildDone, BuildWarning, StepDone, StepOutput, StepStarted

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
    assert records[4] == {"event": "StepOutput", "number": 2, "line": "hi"}
    assert records[-1]["tags"] == ["hello:latest"]


def test_auto_is_plain_off_a_terminal() -> None:
    out = io.StringIO()
    renderer("auto", out)(StepStarted("0", 1, 1, "RUN x"))
    assert out.getvalue() == "[1/1] RUN x\n"
