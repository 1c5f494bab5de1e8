"""The error tree. Every error a user can cause is a BuilderError with its own exit code.

Only the CLI prints errors or exits; library code raises these. `str(err)` is the one-line
message written for the user; `err.render()` may add context lines (the recipe line and a
caret for recipe errors).
"""

from __future__ import annotations

from dataclasses import dataclass


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
        loc = self.location
        if loc is None or loc.source_line is None:
            return str(self)
        gutter = f"{loc.line:>4} | "
        caret = " " * (len(gutter) + max(loc.column - 1, 0)) + "^"
        return f"{self}\n{gutter}{loc.source_line}\n{caret}"


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
