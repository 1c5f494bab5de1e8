"""The syntax tree: one Node per instruction, exactly what BuildKit's parser yields.

This is the boundary between the grammar (syntax.py) and the typed instructions (typed.py).
Field names match the PyPI `dockerfile` package's `Command` so that `builder parse --json`
and the differential tests can compare them one to one.
"""

from __future__ import annotations

from builder.record import dataclass, field


@dataclass(frozen=True)
class Heredoc:
    name: str  # the delimiter word, quotes removed
    file_descriptor: int  # 0 unless written as `3<<EOF`
    content: str  # the raw body, every line with its newline, terminator excluded
    expand: bool = True  # False when any part of the delimiter was quoted
    chomp: bool = False  # True for `<<-`: leading tabs are stripped later


@dataclass(frozen=True)
class Directives:
    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None


@dataclass(frozen=True)
class Node:
    cmd: str  # upper case, as BuildKit reports it ("RUN")
    sub_cmd: str | None  # the inner instruction of ONBUILD, else None
    json: bool  # exec (JSON) form
    original: str  # the instruction text as written (continuations joined)
    start_line: int  # 1-based, inclusive
    end_line: int
    flags: tuple[str, ...]  # raw flag words, e.g. "--from=build"
    # Argument strings, split as BuildKit splits them. For ENV and LABEL these are the
    # corpus triples (key, value, separator) with separator "=" or "" (legacy `ENV K V`);
    # `builder parse --json` drops the separators, as the PyPI package does.
    value: tuple[str, ...]
    heredocs: tuple[Heredoc, ...] = ()
    column: int = 1  # column of the keyword on start_line
    source_line: str = ""  # the physical text of start_line, for error carets
    # For ONBUILD: the inner instruction's own node (its flags and value are also mirrored
    # in `flags`/`value` above, as the PyPI package does).
    inner: Node | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SyntaxTree:
    filename: str
    directives: Directives
    nodes: tuple[Node, ...]
    warnings: tuple[str, ...] = ()  # e.g. empty continuation lines
