"""Progress events: what the engine reports while it builds.

The engine never prints. It calls a `Reporter` with these values and the CLI renders them
as plain lines, tty bars or JSON lines.
"""

from __future__ import annotations

from collections.abc import Callable

from builder.record import dataclass


@dataclass(frozen=True)
class StepStarted:
    stage: str  # the stage's name, or its index as text
    number: int  # 1-based position among the steps of the target's build
    total: int
    text: str  # "RUN echo hi"


@dataclass(frozen=True)
class StepOutput:
    number: int
    line: str  # one line of the step's stdout/stderr, without its newline


@dataclass(frozen=True)
class StepDone:
    number: int
    cached: bool
    seconds: float


@dataclass(frozen=True)
class BuildDone:
    image_id: str  # the config digest, as docker calls it
    manifest_digest: str
    tags: tuple[str, ...]
    seconds: float
    steps: int
    cached_steps: int


@dataclass(frozen=True)
class BuildWarning:
    message: str  # e.g. a --build-arg that no ARG consumes


Event = StepStarted | StepOutput | StepDone | BuildDone | BuildWarning
Reporter = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A reporter that drops everything (library use, tests)."""
