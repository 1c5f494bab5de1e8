"""Docker's .dockerignore rules (moby/patternmatcher), compiled once to regexes.

- One pattern a line; a line starting with `#` is a comment; blank lines are skipped.
- `!pattern` is an exception; the last pattern that matches wins.
- Patterns are cleaned like paths (`./a//b/` -> `a/b`), a leading `/` is dropped.
- `*` and `?` never cross `/`; `**` crosses any number of directories; `[...]` classes.
- A pattern matching a parent directory matches everything below it, yet a later `!`
  exception for a child still lets that child through (Docker's behaviour).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from builder.errors import RecipeError, SourceLocation
from builder.record import dataclass

_REGEX_SPECIAL = frozenset(".+()|{}^$")


def _clean(path: str) -> str:
    path = posixpath.normpath(path) if path else path
    if len(path) > 1 and path.startswith("/"):
        path = path.lstrip("/") or "/"
    return path


def _translate(pattern: str) -> str:
    """patternmatcher's glob-to-regex, for a cleaned pattern."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":  # `**/` is `**`
                    i += 1
                # `**` at the end matches everything; elsewhere any number of dirs (even 0)
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(r"\\")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)  # `[`, `]` and class contents pass through
    out.append("$")
    return "".join(out)


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the `!`
    exclusion: bool  # True for a `!` exception
    regex: re.Pattern[str]
    segments: tuple[re.Pattern[str] | None, ...]  # per `/` segment; None for a `**` segment


def _compile(text: str, exclusion: bool, location: SourceLocation) -> _Pattern:
    try:
        regex = re.compile(_translate(text), re.DOTALL)
        segments = tuple(
            None if "**" in seg else re.compile(_translate(seg), re.DOTALL)
            for seg in text.split("/")
        )
    except re.error as err:
        raise RecipeError(f"invalid .dockerignore pattern {text!r}: {err}", location) from None
    return _Pattern(text, exclusion, regex, segments)


def _parents(path: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]: the directories above a path, outermost first."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class DockerIgnore:
    patterns: tuple[_Pattern, ...]

    @classmethod
    def parse(cls, text: str, filename: str = ".dockerignore") -> DockerIgnore:
        patterns = []
        for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
            if raw.startswith("#"):
                continue
            line = raw.strip()
            if not line:
                continue
            location = SourceLocation(filename, number, 1, raw)
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
                if not line:
                    raise RecipeError('illegal exclusion pattern: "!"', location)
            patterns.append(_compile(_clean(line), exclusion, location))
        return cls(tuple(patterns))

    def excludes(self, rel_path: str) -> bool:
        """Is `rel_path` (relative to the context root, `/`-separated) left out?"""
        path = _clean(rel_path)
        parents = _parents(path)
        matched = False
        for pattern in self.patterns:
            # An exception only matters once something matched, and vice versa.
            if pattern.exclusion != matched:
                continue
            hit = pattern.regex.match(path) is not None or any(
                pattern.regex.match(parent) for parent in parents
            )
            if hit:
                matched = not pattern.exclusion
        return matched

    def _may_match_below(self, pattern: _Pattern, directory: str) -> bool:
        """Could `pattern` match `directory`, a parent of it, or anything inside it?"""
        if directory in ("", "."):
            return True
        for depth, part in enumerate(directory.split("/")):
            if depth >= len(pattern.segments):
                # Every segment matched a leading part: the pattern matches a parent of
                # `directory`, so everything inside is matched through that parent.
                return True
            segment = pattern.segments[depth]
            if segment is None:
                return True  # `**` can swallow the rest
            if segment.match(part) is None:
                return False
        return True

    def may_exclude_within(self, rel_dir: str) -> bool:
        """False when no path under `rel_dir` can be excluded: a walker may skip the tests."""
        directory = _clean(rel_dir)
        return any(not p.exclusion and self._may_match_below(p, directory) for p in self.patterns)

    def may_include_within(self, rel_dir: str) -> bool:
        """False when no `!` exception can reach below `rel_dir`: an excluded dir is pruned."""
        directory = _clean(rel_dir)
        return any(p.exclusion and self._may_match_below(p, directory) for p in self.patterns)


def ignore_file_for(recipe_path: Path, context: Path) -> Path | None:
    """`<recipe>.dockerignore` beside the recipe wins over `<context>/.dockerignore`."""
    beside = recipe_path.with_name(recipe_path.name + ".dockerignore")
    if beside.is_file():
        return beside
    default = context / ".dockerignore"
    return default if default.is_file() else None
