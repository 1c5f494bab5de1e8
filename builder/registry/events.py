"""Progress events of a pull or a push: what the registry client reports while blobs move.

Like the engine's events, these are values handed to a callback; the CLI renders them (a
tqdm bar per layer on a terminal, one line per layer in plain mode, JSON lines). Callbacks
are made from the worker threads that move layers, through a lock (see `serialized`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from builder.record import dataclass


@dataclass(frozen=True)
class TransferStarted:
    action: str  # "pull" | "push"
    ref: str  # the name as the store gives it: "busybox:latest"
    host: str  # the registry (or mirror) the bytes come from or go to


@dataclass(frozen=True)
class BlobStarted:
    action: str
    digest: str
    size: int
    kind: str  # "layer" | "config"


@dataclass(frozen=True)
class BlobProgress:
    digest: str
    done: int  # bytes moved so far
    size: int


@dataclass(frozen=True)
class BlobDone:
    action: str
    digest: str
    size: int
    kind: str
    how: str  # "downloaded", "present" (already in the store or registry), "mounted", "uploaded"
    seconds: float


@dataclass(frozen=True)
class TransferDone:
    action: str
    ref: str
    digest: str  # the manifest's
    seconds: float


TransferEvent = TransferStarted | BlobStarted | BlobProgress | BlobDone | TransferDone
TransferReporter = Callable[[TransferEvent], None]


def ignore(_event: TransferEvent) -> None:
    """A reporter that drops everything (library use, tests)."""


def serialized(report: TransferReporter) -> TransferReporter:
    """`report`, called by one thread at a time: renderers are not thread-safe."""
    lock = threading.Lock()

    def call(event: TransferEvent) -> None:
        with lock:
            report(event)

    return call
