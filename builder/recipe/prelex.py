"""The pre-lexer: physical lines in, logical instruction lines (and heredoc bodies) out.

This is the line-level half of BuildKit's parser: parser directives at the top, comments,
continuation lines ending in the escape character, blank lines inside a continuation, and
heredoc bodies after a RUN/COPY/ADD line. It is hand-written because it depends on state
the grammar cannot see (the escape character a directive chose, which heredocs a line
opened). Each logical line then goes through grammar/recipe.lark (see syntax.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from builder.errors import RecipeError, SourceLocation
from builder.recipe.gostr import GO_SPACE, raw_bytes_to_replacement
from builder.recipe.tree import Directives
from builder.record import dataclass

# Go's RE2 `\s` is [\t\n\f\r ] (no VT); [a-zA-Z] is ASCII only.
_DIRECTIVE = re.compile(
    r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z"
)
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
_MAX_FD = 2**64 - 1


@dataclass(frozen=True)
class LogicalLine:
    text: str  # continuation lines joined, escape characters removed
    start_line: int
    end_line: int
    column: int  # 1-based column of the first character on start_line
    source_line: str  # the physical start line, for error carets
    empty_continuation: bool  # a blank line was skipped inside the continuation


@dataclass(frozen=True)
class HeredocSpec:
    name: str
    file_descriptor: int
    expand: bool
    chomp: bool


def _continuation(escape: str) -> re.Pattern[str]:
    # The escape character, then only blanks, at the end of the line, not itself escaped
    # (`a\\` does not continue), or alone on the line.
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|\A{e}[ \t]*\Z")


class Prelexer:
    """Reads one recipe; iterate `logical_lines()`, and call `read_heredoc` between."""

    def __init__(self, text: str, filename: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self._filename = filename
        self._lines = text.split("\n")
        if self._lines[-1] == "":
            self._lines.pop()  # the text ended with "\n": no further line
        self._ends_with_newline = text.endswith("\n")
        self._next = 0  # index of the next physical line to read (line number - 1)
        self._escape = "\\"
        self._cont = _continuation("\\")
        self._directives: dict[str, str] = {}
        self._directives_done = False

    @property
    def line_number(self) -> int:
        """1-based number of the last physical line read."""
        return self._next

    @property
    def directives(self) -> Directives:
        d = self._directives
        return Directives(escape=self._escape, syntax=d.get("syntax"), check=d.get("check"))

    def _error(self, message: str, line: int, hint: str | None = None) -> RecipeError:
        source = self._lines[line - 1] if 0 < line <= len(self._lines) else None
        return RecipeError(message, SourceLocation(self._filename, line, 1, source), hint)

    def _directive(self, line: str, number: int) -> None:
        """Record a parser directive; the first line that is not one ends the search."""
        match = _DIRECTIVE.match(line)
        key = match.group(1).lower() if match else ""
        if match is None or key not in _KNOWN_DIRECTIVES:
            self._directives_done = True
            return
        if key in self._directives:
            raise self._error(
                f"the `{key}` parser directive is repeated",
                number,
                hint="each directive may appear once, at the top of the file",
            )
        value = match.group(2)
        self._directives[key] = value
        if key == "escape":
            if value not in ("\\", "`"):
                raise self._error(
                    f"invalid escape directive {value!r}", number, hint="use \\ or a backtick"
                )
            self._escape = value
            self._cont = _continuation(value)

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        match = self._cont.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False

    def logical_lines(self) -> Iterator[LogicalLine]:
        lines = self._lines
        while self._next < len(lines):
            number = self._next + 1
            physical = lines[self._next].rstrip("\r")
            self._next += 1
            stripped = physical.lstrip(GO_SPACE)
            if not self._directives_done:
                self._directive(stripped, number)
            if stripped.startswith("#"):
                continue  # a comment (or a directive)
            text, done = self._trim_continuation(stripped)
            if done and text == "":
                continue  # a blank line
            column = len(physical) - len(stripped) + 1
            parts = [text]
            empty = False
            while not done and self._next < len(lines):
                cont = lines[self._next].rstrip("\r")
                self._next += 1
                lead = cont.lstrip(GO_SPACE)
                if lead.startswith("#"):
                    continue  # comments inside a continuation are dropped, it goes on
                if lead == "":
                    empty = True  # BuildKit skips these and warns
                    continue
                text, done = self._trim_continuation(cont)
                parts.append(text)
            yield LogicalLine("".join(parts), number, self._next, column, physical, empty)

    def read_heredoc(self, spec: HeredocSpec, start_line: int) -> str:
        """The body lines up to the terminator, each with its line ending, kept raw."""
        lines = self._lines
        body: list[str] = []
        while self._next < len(lines):
            raw = lines[self._next]
            self._next += 1
            candidate = raw.rstrip("\r")
            if spec.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == spec.name:
                return "".join(body)
            last = self._next == len(lines) and not self._ends_with_newline
            body.append(raw if last else raw + "\n")
        raise self._error(
            f"unterminated heredoc <<{spec.name}",
            start_line,
            hint=f"end it with a line that is exactly {spec.name!r}",
        )


# --- heredoc markers ------------------------------------------------------------------
# BuildKit finds heredocs with its shell lexer (shell/lex.go) in three modes: the whole
# line with quotes and escapes kept, then the marker word with quotes removed and kept.
# `$` is taken literally here: BuildKit lexes with no variables set and keeps `$NAME` and
# `${NAME}` as written, so only `${NAME:-word}`-style defaults in a heredoc delimiter
# (which nobody writes) would differ.


def _shell_words(text: str, raw_quotes: bool, raw_escapes: bool) -> list[str] | None:
    """BuildKit's ProcessWords with the escape `\\`; None where it reports an error."""
    if text.startswith("\ufeff"):
        text = text[1:]  # Go's text/scanner skips a BOM at the start of its input
    text = raw_bytes_to_replacement(text)  # text/scanner decodes invalid bytes as U+FFFD
    words: list[str] = []
    word = ""
    in_word = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return None
            word += text[i : j + 1] if raw_quotes else text[i + 1 : j]
            in_word = True
            i = j + 1
        elif ch == '"':
            out = ['"'] if raw_quotes else []
            i += 1
            while True:
                if i >= n:
                    return None
                c = text[i]
                if c == '"':
                    if raw_quotes:
                        out.append('"')
                    i += 1
                    break
                i += 1
                if c == "\\":
                    if raw_escapes:
                        out.append("\\")
                    if i < n and text[i] in '"$\\':
                        c = text[i]
                        i += 1
                out.append(c)
            word += "".join(out)
            in_word = True
        elif ch == "\\":
            if raw_escapes:
                word += "\\"
                in_word = True
            i += 1
            if i >= n:
                break
            word += text[i]
            in_word = True
            i += 1
        elif ch in GO_SPACE:
            # An empty quoted word ('') keeps the word open, as in BuildKit.
            if in_word and word:
                words.append(word)
                word = ""
                in_word = False
            i += 1
        else:
            word += ch
            in_word = True
            i += 1
    if word:
        words.append(word)
    return words


def heredocs_in_line(line: str) -> list[HeredocSpec]:
    """The heredocs a RUN/COPY/ADD line opens, in order (`<<EOF`, `<<-"EOF"`, `3<<EOF`)."""
    specs: list[HeredocSpec] = []
    for word in _shell_words(line, raw_quotes=True, raw_escapes=True) or ():
        match = _HEREDOC_WORD.match(word)
        if match is None or match.group(3) == "":
            continue
        rest = match.group(3)
        names = _shell_words(rest, raw_quotes=False, raw_escapes=False)
        raw = _shell_words(rest, raw_quotes=True, raw_escapes=False)
        if names is None or raw is None:
            raise ValueError(f"cannot read the heredoc delimiter {rest!r}")
        if len(names) != 1:
            continue
        if len(raw) != 1:
            raise ValueError(f"cannot read the heredoc delimiter {rest!r}")
        quotes = names[0].count("'") + names[0].count('"')
        raw_quotes = raw[0].count("'") + raw[0].count('"')
        fd = int(match.group(1)) if match.group(1) else 0
        specs.append(
            HeredocSpec(
                name=names[0],
                file_descriptor=fd if fd <= _MAX_FD else 0,  # Go ignores the parse error
                expand=quotes == raw_quotes,
                chomp=match.group(2) == "-",
            )
        )
    return specs
