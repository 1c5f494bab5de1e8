"""Renderers for build and transfer events: plain lines (CI logs), tqdm bars (terminals),
JSON lines. A build that pulls its base reports both kinds through one renderer."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from builder.engine.events import (
    BuildDone,
    BuildWarning,
    Event,
    StepDone,
    StepOutput,
    StepStarted,
)
from builder.record import asdict
from builder.registry.events import (
    BlobDone,
    BlobProgress,
    BlobStarted,
    TransferDone,
    TransferEvent,
    TransferStarted,
)

AnyEvent = Event | TransferEvent
Renderer = Callable[[AnyEvent], None]


def human_size(n: int) -> str:
    """Sizes as docker shows them: decimal units, one decimal past bytes."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{size:.1f}TB"


def transfer_line(event: TransferEvent) -> str | None:
    """The plain line of a transfer event: one when it starts, one per blob as it is done,
    one at the end; none for progress."""
    if isinstance(event, TransferStarted):
        where = "from" if event.action == "pull" else "to"
        return f"{event.action} {event.ref} {where} {event.host}"
    if isinstance(event, BlobDone):
        short = event.digest.partition(":")[2][:12]
        return f"  {event.kind} {short} {human_size(event.size)} {event.how} {event.seconds:.2f}s"
    if isinstance(event, TransferDone):
        return f"{event.action}ed {event.ref} {event.digest} in {event.seconds:.2f}s"
    return None


def stage_label(stage: str) -> str:
    """A stage as BuildKit names it in logs: its name, or `stage-N` for an unnamed one (a
    stage name never starts with a digit)."""
    return f"stage-{stage}" if stage.isdecimal() else stage


class Steps:
    """How a step is named on its lines: `[2/5]`, or `[build 2/4]` with the stage's place
    when the stages' steps interleave (StepStarted.concurrent), whose output lines are then
    `build | ...`."""

    def __init__(self) -> None:
        self.total = 0
        self._names: dict[int, str] = {}  # a concurrent step's `[build 2/4]`, by number

    def started(self, event: StepStarted) -> str:
        self.total = event.total
        if event.concurrent:
            name = f"[{stage_label(event.stage)} {event.stage_step}/{event.stage_steps}]"
            self._names[event.number] = name
            return name
        return f"[{event.number}/{event.total}]"

    def name(self, number: int) -> str:
        return self._names.get(number) or f"[{number}/{self.total}]"

    def output(self, event: StepOutput) -> str:
        if event.number in self._names:
            return f"{stage_label(event.stage)} | {event.line}"
        return event.line


class _Serial:
    """A renderer called from several threads (stages built at once, their output pumps, a
    pull) renders one event at a time, so each event's lines come out whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: AnyEvent) -> None:
        with self._lock:
            self.render(event)

    def render(self, event: AnyEvent) -> None:
        raise NotImplementedError


class PlainRenderer(_Serial):
    """`[2/5] RUN ...`, the step's output as is, then `[2/5] CACHED` or `[2/5] DONE 0.4s`;
    with stages built at once, `[build 2/4] RUN ...`, `build | output`, `[build 2/4] DONE`."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self.steps = Steps()

    def render(self, event: AnyEvent) -> None:
        out = self.stream
        if isinstance(event, TransferEvent):
            line = transfer_line(event)
            if line is not None:
                out.write(f"{line}\n")
        elif isinstance(event, StepStarted):
            out.write(f"{self.steps.started(event)} {event.text}\n")
        elif isinstance(event, StepOutput):
            out.write(f"{self.steps.output(event)}\n")
        elif isinstance(event, StepDone):
            status = "CACHED" if event.cached else f"DONE {event.seconds:.2f}s"
            out.write(f"{self.steps.name(event.number)} {status}\n")
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


class JsonRenderer(_Serial):
    """One JSON object per event, with an "event" key naming its type and a "time" key
    (Unix seconds) saying when it happened: stages built at once overlap in time."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def render(self, event: AnyEvent) -> None:
        record: dict[str, Any] = {"event": type(event).__name__, "time": time.time()}
        record.update(asdict(event))
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


class TtyRenderer(_Serial):
    """A tqdm bar over the steps, one per blob while it moves; output scrolls above them."""

    def __init__(self, stream: IO[str]) -> None:
        from tqdm import tqdm

        super().__init__()
        self.stream = stream
        self.bar: Any = None
        self.blobs: dict[str, Any] = {}
        self._tqdm = tqdm
        self.steps = Steps()

    def _transfer(self, event: TransferEvent) -> None:
        if isinstance(event, BlobStarted):
            self.blobs[event.digest] = self._tqdm(
                total=event.size,
                file=self.stream,
                unit="B",
                unit_scale=True,
                leave=False,
                dynamic_ncols=True,
                desc=f"{event.kind} {event.digest.partition(':')[2][:12]}",
            )
        elif isinstance(event, BlobProgress):
            bar = self.blobs.get(event.digest)
            if bar is not None:
                bar.update(event.done - bar.n)
        elif isinstance(event, BlobDone):
            bar = self.blobs.pop(event.digest, None)
            if bar is not None:
                bar.close()
        line = transfer_line(event)
        if line is not None:
            self._tqdm.write(line, file=self.stream)

    def render(self, event: AnyEvent) -> None:
        if isinstance(event, TransferEvent):
            self._transfer(event)
        elif isinstance(event, StepStarted):
            if self.bar is None:
                self.bar = self._tqdm(
                    total=event.total,
                    file=self.stream,
                    unit="step",
                    leave=False,
                    dynamic_ncols=True,
                )
            name = self.steps.started(event)
            self.bar.set_description_str(f"{name} {event.text[:60]}")
        elif isinstance(event, StepOutput):
            self._tqdm.write(self.steps.output(event), file=self.stream)
        elif isinstance(event, StepDone) and self.bar is not None:
            self.bar.update(1)
        elif isinstance(event, BuildWarning):
            self._tqdm.write(f"warning: {event.message}", file=self.stream)
        elif isinstance(event, BuildDone):
            if self.bar is not None:
                self.bar.close()
            PlainRenderer(self.stream)(event)


def renderer(mode: str, stream: IO[str] | None = None) -> Renderer:
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "quiet":
        return lambda _event: None
    if mode == "json":
        return JsonRenderer(stream)
    if mode == "tty":
        return TtyRenderer(stream)
    return PlainRenderer(stream)
