"""Renderers for build and transfer events: plain lines (CI logs), tqdm bars (terminals),
JSON lines. A build that pulls its base reports both kinds through one renderer."""

from __future__ import annotations

import json
import sys
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


class PlainRenderer:
    """`[2/5] RUN ...`, the step's output as is, then `[2/5] CACHED` or `[2/5] DONE 0.4s`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.total = 0

    def __call__(self, event: AnyEvent) -> None:
        out = self.stream
        if isinstance(event, TransferEvent):
            line = transfer_line(event)
            if line is not None:
                out.write(f"{line}\n")
        elif isinstance(event, StepStarted):
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

    def __call__(self, event: AnyEvent) -> None:
        record: dict[str, Any] = {"event": type(event).__name__, **asdict(event)}
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


class TtyRenderer:
    """A tqdm bar over the steps, one per blob while it moves; output scrolls above them."""

    def __init__(self, stream: IO[str]) -> None:
        from tqdm import tqdm

        self.stream = stream
        self.bar: Any = None
        self.blobs: dict[str, Any] = {}
        self._tqdm = tqdm

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

    def __call__(self, event: AnyEvent) -> None:
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


def renderer(mode: str, stream: IO[str] | None = None) -> Renderer:
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
