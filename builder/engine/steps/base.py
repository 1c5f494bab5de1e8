"""What every step handler receives besides the instruction and the state."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from builder.engine.context import BuildContext
from builder.engine.events import Reporter
from builder.engine.executor import Executor, SandboxExecutor
from builder.engine.remote_cache import CacheLink
from builder.engine.state import ImageState
from builder.image.compression import LayerCompression
from builder.image.config import DEFAULT_PATH, History
from builder.image.epoch import created_at
from builder.image.image import Image
from builder.recipe.instructions import Instruction
from builder.recipe.scope import StageScope
from builder.recipe.tree import Heredoc
from builder.record import dataclass, field
from builder.store import Store

if TYPE_CHECKING:
    from builder.sandbox.hosts import HostEntry

BUILDKIT_COMMENT = "buildkit.dockerfile.v0"


@dataclass
class StepContext:
    store: Store
    scope: StageScope
    context: BuildContext
    report: Reporter
    number: int  # the step's number in the log
    no_cache: bool
    compression: LayerCompression  # what new layers are written with
    network: str  # the build's default for RUN: "default", "none" or "host"
    stages: Mapping[str, ImageState]  # finished stages by name and by index text
    cache: CacheLink  # step records: the local cache, then imported ones; what --cache-to gets
    escape: str = "\\"  # the recipe's escape character, for expansion
    secrets: Mapping[str, bytes] = field(default_factory=dict)  # --secret id -> its bytes
    source_date_epoch: int | None = None  # SOURCE_DATE_EPOCH: the steps' time, the mtime cap
    executor: Executor = field(default_factory=SandboxExecutor)  # runs RUN and the writers
    images: Callable[[str], Image] | None = None  # COPY --from=IMAGE (default: the store's)
    allow: frozenset[str] = frozenset()  # entitlements RUN may use (BuildOptions.entitlements)
    # Lazy stages (engine/lazystages): a probe computes keys only, a miss becoming an
    # unresolved state; `realize` builds the stage an unresolved state stands for.
    probe: bool = False
    realize: Callable[[ImageState], ImageState] = lambda state: state
    add_hosts: tuple[HostEntry, ...] = ()  # --add-host, for every RUN's /etc/hosts


def now(source_date_epoch: int | None = None) -> str:
    """A step's `created`: the clock's time, or SOURCE_DATE_EPOCH's when the build has one."""
    if source_date_epoch is not None:
        return created_at(source_date_epoch)
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def history(created: str, created_by: str, *, empty_layer: bool) -> History:
    return History(
        created=created, created_by=created_by, comment=BUILDKIT_COMMENT, empty_layer=empty_layer
    )


def run_env(scope_env: list[str]) -> list[str]:
    """A RUN's environment; BuildKit gives a default PATH when the image has none."""
    if any(item.startswith("PATH=") for item in scope_env):
        return scope_env
    return [f"PATH={DEFAULT_PATH}", *scope_env]


def heredoc_body(heredoc: Heredoc) -> str:
    """The body as the step uses it: `<<-` strips leading tabs from every line."""
    if not heredoc.chomp:
        return heredoc.content
    return "".join(line.lstrip("\t") for line in heredoc.content.splitlines(keepends=True))


def shown(instr: Instruction, width: int = 80) -> str:
    """The instruction as written, cut to one line of `width` for messages."""
    text = " ".join(instr.original.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def where(instr: Instruction) -> str:
    """`Dockerfile:LINE: INSTRUCTION`: how an error found later names the step."""
    return f"{instr.location.filename}:{instr.location.line}: {shown(instr, 120)}"


_HEREDOC_MARKER = re.compile(r"\d*<<-?\s*\S+")


def is_heredoc_marker(word: str) -> bool:
    """`<<EOF`, `<<-"EOF"`, `3<<EOF`: a word that stands for a heredoc's body."""
    return _HEREDOC_MARKER.fullmatch(word.strip()) is not None
