"""The error tree. Every error a user can cause is a BuilderError with its own exit code.

Only the CLI prints errors or exits; library code raises these. `str(err)` is the one-line
message written for the user; `err.render()` may add context lines (the recipe line and a
caret for recipe errors).
"""

from __future__ import annotations

from builder.record import dataclass


class BuilderError(Exception):
    """Root of every error that is the user's or the environment's, not a bug of ours."""

    exit_code = 1

    def render(self) -> str:
        """The full text the CLI prints after `error: `."""
        return str(self)


class UsageError(BuilderError):
    """Bad command-line use: a missing file, an invalid flag value, a malformed name."""

    exit_code = 2


@dataclass(frozen=True)
class SourceLocation:
    """Where in a recipe something is: 1-based line and column."""

    filename: str
    line: int
    column: int = 1
    source_line: str | None = None


class RecipeError(BuilderError):
    """The recipe is not valid: syntax, an unknown instruction or flag, a bad expansion."""

    exit_code = 3

    def __init__(
        self, message: str, location: SourceLocation | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        loc = self.location
        if loc is None:
            return text
        return f"{loc.filename}:{loc.line}:{loc.column}: {text}"

    def render(self) -> str:
        # What the recipe holds is shown escaped and clipped: its bytes must neither drive
        # the terminal nor split the one `error:` line, and a 4 MB line is not shown whole.
        message = _clip(_visible(str(self)), _MESSAGE_CHARS)
        loc = self.location
        if loc is None or loc.source_line is None:
            return message
        column = max(loc.column - 1, 0)
        start = max(column - _LINE_CHARS // 2, 0)
        before = ("…" if start else "") + _visible(loc.source_line[start:column])
        after = _visible(loc.source_line[column : start + _LINE_CHARS])
        if start + _LINE_CHARS < len(loc.source_line):
            after += "…"
        gutter = f"{loc.line:>4} | "
        # A tab stays a tab under the caret too, so the caret lines up in any terminal.
        pad = "".join("\t" if ch == "\t" else " " for ch in before)
        return f"{message}\n{gutter}{before}{after}\n{' ' * len(gutter)}{pad}^"


_MESSAGE_CHARS = 400  # of a message that quotes a huge word: its head and tail are shown
_LINE_CHARS = 120  # of the source line, around the caret


def _visible(text: str) -> str:
    """`text` with every unprintable character but tab written as an escape (\\x1b)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == "\t" else ascii(ch)[1:-1] for ch in text)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} … {text[-half:]}"


class ImageNotFound(BuilderError):
    """An image name that the local store does not hold."""

    exit_code = 4


class StepFailed(BuilderError):
    """A RUN step's process exited non-zero (or was killed)."""

    exit_code = 5

    def __init__(self, message: str, status: int, location: SourceLocation | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.location = location

    def __str__(self) -> str:
        msg = super().__str__()
        loc = self.location
        return f"{loc.filename}:{loc.line}: {msg}" if loc else msg


class StoreError(BuilderError):
    """The local store is unreadable, locked, corrupt or out of space."""

    exit_code = 6


class LayerError(BuilderError):
    """A layer or tarball is unsafe (path escapes the root) or corrupt (digest mismatch)."""

    exit_code = 7


class SandboxError(BuilderError):
    """The kernel refused to set up the sandbox (namespaces, mounts, pivot_root, cgroups)."""

    exit_code = 8


class RegistryError(BuilderError):
    """A registry refused, failed, or sent something that does not verify."""

    exit_code = 9


class BuildContextError(BuilderError):
    """A COPY/ADD source is missing from the build context or escapes it."""

    exit_code = 10


class RunFailed(BuilderError):
    """`builder run` could not start the container, docker's exit code 125: a bad flag, an
    unknown image, a setup step the sandbox failed. 126 and 127 (the command cannot be
    executed, or is not found) are statuses of the container's process, not errors."""

    exit_code = 125
