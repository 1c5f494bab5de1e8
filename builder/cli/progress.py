"""Renderers for build events: plain lines (CI logs), a tqdm bar (terminals), JSON lines."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import IO, Any

from builder.engine.events import (
    BuildDone,
    BuildWarning,
    Event,
    Reporter,
    StepDone,
    StepOutput,
    StepStarted,
)


class PlainRenderer:
    """`[2/5] RUN ...`, the step's output as is, then `[2/5] CACHED` or `[2/5] DONE 0.4s`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.total = 0

    def __call__(self, event: Event) -> None:
        out = self.stream
        if isinstance(event, StepStarted):
            self.total = event.total
            out.write(f"[{event.number}/{event.total}] {event.text}\n")
        elif isinstance(event, StepOutput):
            out.write(f"{event.line}\n")
        elif isinstance(event, StepDone):
            status = "CACHED" if event.cached else f"DONE {event.seconds:.2f}s"
            out.write(f"[{event.number}/{self.total}] {status}\n")
        elif isinstance(event, BuildWarning):
            out.write(f"warning: {event.message}\n")
        elif isinstance(event, BuildDone):
            out.write(
                f"built {event.image_id} in {event.seconds:.2f}s"
                f" ({event.cached_steps}/{event.steps} steps cached)\n"
            )
            for tag in event.tags:
                out.write(f"tagged {tag}\n")
        out.flush()


class JsonRenderer:
    """One JSON object per event, with an "event" key naming its type."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        record: dict[str, Any] = {"event": type(event).__name__, **asdict(event)}
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


class TtyRenderer:
    """A tqdm bar over the steps; step output scrolls above it."""

    def __init__(self, stream: IO[str]) -> None:
        from tqdm import tqdm

        self.stream = stream
        self.bar: Any = None
        self._tqdm = tqdm

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            if self.bar is None:
                self.bar = self._tqdm(
                    total=event.total,
                    file=self.stream,
                    unit="step",
                    leave=False,
                    dynamic_ncols=True,
                )
            self.bar.set_description_str(f"[{event.number}/{event.total}] {event.text[:60]}")
        elif isinstance(event, StepOutput):
            self._tqdm.write(event.line, file=self.stream)
        elif isinstance(event, StepDone) and self.bar is not None:
            self.bar.update(1)
        elif isinstance(event, BuildWarning):
            self._tqdm.write(f"warning: {event.message}", file=self.stream)
        elif isinstance(event, BuildDone):
            if self.bar is not None:
                self.bar.close()
            PlainRenderer(self.stream)(event)


def renderer(mode: str, stream: IO[str] | None = None) -> Reporter:
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "json":
        return JsonRenderer(stream)
    if mode == "tty":
        return TtyRenderer(stream)
    if mode == "quiet":
        return lambda _event: None
    return PlainRenderer(stream)
