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
    # Its place in its stage (the FROM is 1), for logs where stages interleave.
    stage_step: int = 0
    stage_steps: int = 0
    # Steps of other stages may run at the same time (--jobs): a renderer then names the
    # stage on each line of this step, as BuildKit's `[build 2/4]`.
    concurrent: bool = False


@dataclass(frozen=True)
class StepOutput:
    number: int
    line: str  # one line of the step's stdout/stderr, without its newline
    stage: str = ""  # the step's stage, as in StepStarted


@dataclass(frozen=True)
class StepDone:
    number: int
    cached: bool
    seconds: float
    stage: str = ""  # the step's stage, as in StepStarted


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


def for_stage(report: Reporter, stage: str, first: int, steps: int, concurrent: bool) -> Reporter:
    """`report` for the steps of one stage, numbered from `first`: each event gets the
    stage's name and each step its place in the stage, which the steps themselves (and
    the output pump) do not know."""

    def tagged(event: Event) -> None:
        if isinstance(event, StepStarted):
            event = StepStarted(
                event.stage,
                event.number,
                event.total,
                event.text,
                stage_step=event.number - first + 1,
                stage_steps=steps,
                concurrent=concurrent,
            )
        elif isinstance(event, StepOutput):
            event = StepOutput(event.number, event.line, stage=stage)
        elif isinstance(event, StepDone):
            event = StepDone(event.number, event.cached, event.seconds, stage=stage)
        report(event)

    return tagged
