"""BuildKit's shell-word lexer: quote removal, escapes and `$var` expansion.

This is the builder-side word processing that BuildKit applies to ENV, LABEL, ARG, COPY/ADD,
WORKDIR, USER, VOLUME, EXPOSE, STOPSIGNAL, FROM and mount options. It is *not* a shell: RUN,
CMD and ENTRYPOINT are never expanded here (the shell in the image does that). The behaviour
is pinned by BuildKit's own tables (tests/recipe/test_conformance_shell.py).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping

from builder.record import dataclass

_EOF = ""
# Special parameters are single characters; they are never set in a recipe, so expand to "".
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# `${a:-${b:-...}}` is read by recursion, a few Python frames per level; deeper nesting is
# refused (nobody writes more than three levels) long before Python's recursion limit.
MAX_NESTING = 64


class ExpansionError(ValueError):
    """A word that cannot be expanded: bad substitution, unbalanced quote, `${x:?msg}`."""


@dataclass(frozen=True)
class Expansion:
    """The outcome of processing one word."""

    text: str  # single-word mode: quotes removed, escapes processed, variables expanded
    words: tuple[str, ...]  # multi-word mode: `text` split on unquoted, unescaped whitespace
    matched: frozenset[str]  # variable names that were looked up and found
    unmatched: frozenset[str]  # variable names that were looked up and not set


def _is_digit(ch: str) -> bool:
    # Go's unicode.IsDigit is the Nd category; str.isdigit() also takes superscripts.
    return ch != _EOF and unicodedata.category(ch) == "Nd"


def _is_name_char(ch: str) -> bool:
    return ch != _EOF and (ch.isalpha() or _is_digit(ch) or ch == "_")


class _Words:
    """Accumulates multi-word output: quoted/escaped text is raw, expanded text splits.

    The current word is kept as a list of pieces and joined once when it ends: `+=` on an
    attribute copies the whole word each time, which made a 1 MB LABEL value take seconds.
    """

    def __init__(self) -> None:
        self.words: list[str] = []
        self.pieces: list[str] = []  # the current word; empty pieces are never kept
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.pieces:
                self.words.append("".join(self.pieces))
                self.pieces = []
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        if text:
            self.pieces.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.pieces:
            self.words.append("".join(self.pieces))
            self.pieces = []
            self.in_word = False
        return self.words


@functools.cache
def _plain_run(specials: str) -> re.Pattern[str]:
    """A run of characters that neither start a construct nor split words (`\\s` is exactly
    str.isspace): taken in one step instead of one loop turn per character."""
    return re.compile(rf"[^{re.escape(specials)}\s]+")


class _Lexer:
    """One pass over one word. State is per call; nothing is shared between calls."""

    def __init__(self, source: str, env: Mapping[str, str], escape: str, skip_quotes: bool) -> None:
        self.src = source
        self.pos = 0
        self.env = env
        self.escape = escape
        self.skip_quotes = skip_quotes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        self.depth = 0  # ${...} open around the current position

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch != _EOF:
            self.pos += 1
        return ch

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
        else:
            self.matched.add(name)
        return value

    def process(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to `stop` (consumed) or the end; raw_escapes keeps escape chars (patterns)."""
        out: list[str] = []
        words = _Words()
        quotes = "" if self.skip_quotes else "'\""
        plain = _plain_run("$" + quotes + self.escape + stop)
        while (ch := self.peek()) != _EOF:
            run = plain.match(self.src, self.pos)
            if run is not None:
                out.append(run.group())
                words.add_raw(run.group())
                self.pos = run.end()
                continue
            if stop != _EOF and ch == stop:
                self.next()
                return "".join(out), words.finish()
            if ch == "$":
                text = self.dollar()
                out.append(text)
                words.add_string(text)
            elif ch in "'\"" and not self.skip_quotes:
                text = self.single_quote() if ch == "'" else self.double_quote()
                out.append(text)
                words.add_raw(text)
            else:
                ch = self.next()
                if ch == self.escape:
                    if raw_escapes:
                        words.add_raw(ch)
                        out.append(ch)
                    ch = self.next()
                    if ch == _EOF:  # a trailing lone escape is dropped
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop != _EOF:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.finish()

    def single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        self.next()
        end = self.src.find("'", self.pos)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching '")
        text = self.src[self.pos : end]
        self.pos = end + 1
        return text

    def double_quote(self) -> str:
        # Literal except `$`, and the escape char, which only escapes " $ and itself.
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise ExpansionError('unexpected end of statement while looking for matching "')
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        ch = self.peek()
        if _is_digit(ch):  # positional parameter: the whole digit run is the name
            start = self.pos
            while _is_digit(self.peek()):
                self.pos += 1
            return self.src[start : self.pos]
        if ch != _EOF and ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        start = self.pos
        while _is_name_char(self.peek()):
            self.pos += 1
        return self.src[start : self.pos]

    def dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.lookup(name) or ""
        self.next()  # the {
        if self.depth >= MAX_NESTING:
            raise ExpansionError(f"${{...}} nested deeper than {MAX_NESTING} levels")
        self.depth += 1
        try:
            return self.braced()
        finally:
            self.depth -= 1

    def braced(self) -> str:
        """`${...}` after the brace, up to and with the closing one."""
        ch = self.peek()
        if ch == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if op == "}":
            return self.lookup(name) or ""
        if op == "/":
            return self.replace(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
            if op in ("#", "%"):
                # bash has no `${x:#p}`; BuildKit's own docs list only the plain forms.
                raise ExpansionError(f"unsupported modifier (:{op}) in substitution")
        if op == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if op not in "+-?#%":
            shown = (":" if null_is_unset else "") + op
            raise ExpansionError(f"unsupported modifier ({shown}) in substitution")
        word = self.braced_word(raw_escapes=op in "#%")
        value = self.lookup(name)
        empty = value is None or (null_is_unset and value == "")
        if op == "-":
            return word if empty else (value or "")
        if op == "+":
            return "" if empty else word
        if op == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(op)
        if greedy:
            word = word[1:]
        if op == "#":
            return _trim_prefix(word, value or "", greedy)
        return _trim_suffix(word, value or "", greedy)

    def braced_word(self, raw_escapes: bool) -> str:
        try:
            return self.process("}", raw_escapes)[0]
        except ExpansionError:
            if self.peek() == _EOF:
                raise ExpansionError("syntax error: missing '}'") from None
            raise

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern = self.process("/", True)[0]
        except ExpansionError:
            if self.peek() == _EOF:
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self.braced_word(raw_escapes=True)
        value = self.lookup(name) or ""
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _m: replacement, value, count=0 if replace_all else 1)


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell glob (`*`, `?`, `\\*`, `\\?`, `\\\\`; no brackets) as a regex."""
    parts = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            parts.append(star)
        elif ch == "?":
            parts.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else _EOF
            if nxt in ("}", "/") and nxt != _EOF:
                continue  # `\}` and `\/` only protect the ${} syntax; the escape is dropped
            if nxt == _EOF or nxt not in "*?\\":
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution")
            parts.append(re.escape(nxt))
            i += 1
        else:
            parts.append(re.escape(ch))
    # DOTALL: a value may hold newlines and `*` must still cross them.
    return re.compile("".join(parts), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse, keeping each `\x` escape pair in order (a\*c -> c\*a).
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match, not the shortest rightmost one: reverse both sides.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def process_word(
    word: str, env: Mapping[str, str], escape: str = "\\", *, skip_quotes: bool = False
) -> Expansion:
    """Expand one word and report which variables it looked up.

    `skip_quotes` leaves quote characters alone (heredoc bodies: quotes belong to the script).
    """
    lexer = _Lexer(word, env, escape, skip_quotes)
    text, words = lexer.process(_EOF, raw_escapes=False)
    return Expansion(text, tuple(words), frozenset(lexer.matched), frozenset(lexer.unmatched))


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Single-word mode: quote removal, escapes, expansion, no field splitting."""
    return process_word(word, env, escape).text


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Multi-word mode: expand, then split on whitespace that is neither quoted nor escaped."""
    return list(process_word(word, env, escape).words)
