"""Typed instructions: one frozen dataclass per Dockerfile instruction.

Every string field holds the *raw* word as written (quotes kept, variables unexpanded)
until `resolve()` returns a copy with exactly the fields BuildKit expands expanded
and unquoted. The build engine resolves each instruction against the stage's scope just
before it executes it, because the scope (ARG/ENV, the base image's ENV) is only known then.

Flag values the engine uses are carried parsed (a --chmod mode as an int, durations in
nanoseconds, a platform, RUN mounts); flags and values we do not support never get this far.
A parsed field of an expanded flag (`mode`, `parsed_platform`, `run_mounts`) is filled when
the recipe is typed if the raw value is literal, and always by `resolve()`: the engine reads
it only from a resolved instruction. Users (--chown, USER) stay as given: only the image's
/etc files, at build time, can say who they are.
"""

from __future__ import annotations

from builder.errors import SourceLocation
from builder.image.platform import Platform
from builder.recipe.mounts import RunMount
from builder.recipe.tree import Heredoc
from builder.record import dataclass


@dataclass(frozen=True, kw_only=True)
class Instruction:
    location: SourceLocation
    original: str  # the instruction as written, for history entries and messages

    @property
    def keyword(self) -> str:
        return type(self).__name__.upper()


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    image: str  # raw: "$BASE", "busybox:1.36", "scratch", or an earlier stage's name
    stage_name: str | None = None  # `AS name`, lower-cased as BuildKit does
    platform: str | None = None  # raw --platform
    parsed_platform: Platform | None = None  # this host's platform: the only one we build


@dataclass(frozen=True, kw_only=True)
class Run(Instruction):
    # Shell form: one string, the script (heredoc markers kept); exec form: the argv.
    command: tuple[str, ...]
    exec_form: bool
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()  # raw --mount values
    run_mounts: tuple[RunMount, ...] = ()  # the same, parsed
    network: str | None = None  # --network=default|none|host
    security: str | None = None  # --security=sandbox|insecure


@dataclass(frozen=True, kw_only=True)
class Copy(Instruction):
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None = None  # never expanded (BuildKit does not expand --from)
    chown: str | None = None  # as given
    chmod: str | None = None  # raw --chmod
    mode: int | None = None  # --chmod parsed: permission bits
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Add(Instruction):
    sources: tuple[str, ...]
    dest: str
    chown: str | None = None  # as given
    chmod: str | None = None  # raw --chmod
    mode: int | None = None  # --chmod parsed: permission bits
    checksum: str | None = None  # accepted only with remote sources, which are refused
    keep_git_dir: bool = False
    unpack: bool | None = None  # --unpack[=BOOL]; None: a local archive is unpacked
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    args: tuple[tuple[str, str | None], ...]  # name, default (None when there is no `=`)


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    user: str


@dataclass(frozen=True, kw_only=True)
class Cmd(Instruction):
    command: tuple[str, ...]  # shell form: one string
    exec_form: bool


@dataclass(frozen=True, kw_only=True)
class Entrypoint(Instruction):
    command: tuple[str, ...]
    exec_form: bool


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    argv: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    ports: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Stopsignal(Instruction):
    signal: str


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    test: tuple[str, ...]  # docker's form: ("NONE",) or ("CMD", argv...) or ("CMD-SHELL", script)
    # Nanoseconds, as the image config stores them (0: unset, docker's default applies).
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    trigger: str  # the inner instruction's text, stored in the image config as written
    instruction: Instruction


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    name: str


@dataclass(frozen=True)
class Recipe:
    """A parsed and typed recipe: what `recipe.load()` returns."""

    filename: str
    escape: str
    instructions: tuple[Instruction, ...]
    syntax: str | None = None
    check: str | None = None
