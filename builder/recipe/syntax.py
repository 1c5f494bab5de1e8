"""Recipe text in, syntax tree out: BuildKit's Dockerfile parser, reproduced.

Three steps. prelex.py turns the text into logical lines (directives, continuations,
comments, heredoc bodies). The grammar, grammar/recipe.lark, splits every logical line
into keyword, flags and the rest, in one Lark (LALR) pass over the whole file. Then each
instruction's rest is split into argument strings by the rule BuildKit applies to that
keyword (JSON or shell form, ENV pairs, ...), which is what this module does.

Nothing is expanded or unquoted here (besides flags, which BuildKit unquotes at this
stage): the typed layer on top of these Nodes does that.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from pathlib import Path
from typing import TYPE_CHECKING

from builder import record
from builder.errors import RecipeError, SourceLocation
from builder.recipe.dump import dump, to_json
from builder.recipe.gostr import (
    GO_BYTE_SPACE,
    GO_SPACE,
    NotStringArray,
    clean_surrogates,
    from_byte_chars,
    go_json_strings,
    go_trim_space,
    raw_bytes_to_replacement,
    to_byte_chars,
)
from builder.recipe.prelex import LogicalLine, Prelexer, heredocs_in_line
from builder.recipe.tree import Heredoc, Node, SyntaxTree

__all__ = ["dump", "parse_syntax", "to_json"]  # dump/to_json live in dump.py

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

_WHITESPACE = re.compile(r"[\t\x0b\x0c\r ]+")  # BuildKit's reWhitespace (ASCII only)
_FLAG_PART = re.compile(
    r"""\\(.?)|'((?:[^'\\]|\\.?)*)'?|"((?:[^"\\]|\\.?)*)"?|([^'"\\]+)""", re.DOTALL
)
_INNER_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_HEREDOC_COMMANDS = frozenset({"RUN", "COPY", "ADD"})
_JSON_LIST = frozenset({"ADD", "COPY", "VOLUME"})
_JSON_OR_STRING = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL"})
_WORDS = frozenset({"FROM", "EXPOSE"})
_STRING = frozenset({"MAINTAINER", "STOPSIGNAL", "USER", "WORKDIR"})
_UNREADABLE = "this line cannot be read as an instruction"
# BuildKit parses `ONBUILD ONBUILD x` (its dispatcher refuses it, as typed.py does); deeper
# chains are refused here, before they could nest a Node per word.
_MAX_ONBUILD_DEPTH = 2
_UNREADABLE_HINT = "an instruction is a keyword, its --flags, then its arguments"
GRAMMAR_CACHE = Path(__file__).with_name("__pycache__") / "recipe.lark.cache"


@functools.cache
def _parser() -> Lark:
    """The grammar, loaded once from the package (it ships inside the wheel)."""
    from lark import Lark

    grammar = importlib.resources.files("builder.recipe").joinpath("recipe.lark")
    text = grammar.read_text(encoding="utf-8")
    # Lark can keep the compiled LALR tables; we keep them where Python keeps this package's
    # bytecode (same owner, same trust), keyed by Lark on the grammar's hash. Where that is
    # not writable the grammar is simply compiled each time. A stale entry (another grammar,
    # Lark or Python) or a damaged one is a miss that Lark writes again (tested). What is
    # left of a cold parse is Lark's import (~40 ms); Lark's standalone parser is no faster
    # to import (measured: it carries the same runtime in one module).
    cache = GRAMMAR_CACHE
    # The contextual lexer looks only for the terminals the parser can take next: at the
    # start of a line, KEYWORD. A line starting with a raw 0xA0 or 0x85 byte (blank to the
    # flag scanner, not to TrimSpace) is then a keyword, as in BuildKit, and not a REST
    # token that no rule can place (the basic lexer tries REST first).
    options = {"parser": "lalr", "lexer": "contextual", "start": ["start", "line"]}
    try:
        cache.parent.mkdir(exist_ok=True)
        return Lark(text, cache=str(cache), **options)
    except OSError:
        return Lark(text, **options)


class _Unreadable(Exception):
    """The grammar could not read a line: its index among the lines given to it."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _grammar(doc: str, start: str) -> Tree[Token]:
    """One Lark pass. Every logical line fits the grammar; should one not, its index comes
    out as _Unreadable, never one of Lark's exceptions (garbage in, a recipe error out)."""
    from lark.exceptions import LarkError

    try:
        return _parser().parse(doc, start=start)
    except LarkError as err:
        line = getattr(err, "line", None)  # 1-based in `doc`, for the Unexpected* errors
        raise _Unreadable(line - 1 if isinstance(line, int) and line > 0 else 0) from None


@record.dataclass(frozen=True)
class _Split:
    keyword: str
    flags: tuple[str, ...]
    rest: str


@record.dataclass(frozen=True)
class _Where:
    """Where a logical line came from, for nodes and error messages."""

    filename: str
    start_line: int
    end_line: int
    column: int
    source_line: str

    def error(self, message: str, hint: str | None = None) -> RecipeError:
        loc = SourceLocation(self.filename, self.start_line, self.column, self.source_line)
        return RecipeError(message, loc, hint)


def _unquote_flag(raw: str) -> str:
    """A flag word as BuildKit keeps it: quotes removed, backslash escapes applied."""
    out: list[str] = []
    for match in _FLAG_PART.finditer(raw):
        escaped, single, double, plain = match.groups()
        if escaped is not None:
            out.append(escaped)
        elif plain is not None:
            out.append(plain)
        else:
            inner = single if single is not None else double
            out.append(_INNER_ESCAPE.sub(lambda m: m.group(1), inner or ""))
    return "".join(out)


def _split_tokens(tokens: list[Token], doc: str) -> _Split:
    """Keyword, flags and rest from one `line` of the grammar (byte-character view)."""
    keyword = from_byte_chars(str(tokens[0]))
    flags: list[str] = []
    rest = ""
    for token in tokens[1:]:
        if token.type == "REST":
            rest = str(token).lstrip(GO_BYTE_SPACE)  # the blank bytes before it are skipped
            break
        # Flags stay in the byte-character view: BuildKit builds them byte by byte, each
        # byte turned into the rune of the same number, so that view *is* its result.
        word = _unquote_flag(str(token).lstrip(GO_BYTE_SPACE))
        if word == "--":  # ends the flags; what follows is the rest even if it starts --
            end = token.end_pos
            assert end is not None
            newline = doc.find("\n", end)
            rest = doc[end : newline if newline >= 0 else len(doc)]
            break
        flags.append(word)
    return _Split(keyword, tuple(flags), go_trim_space(from_byte_chars(rest)))


def _split_one(text: str, where: _Where) -> _Split:
    """Split a single instruction line (the inside of ONBUILD, lines with heredocs)."""
    trimmed = go_trim_space(text)
    if not trimmed:
        return _Split("", (), "")
    chars = to_byte_chars(trimmed)
    try:
        tree = _grammar(chars, start="line")
    except _Unreadable:
        raise where.error(_UNREADABLE, hint=_UNREADABLE_HINT) from None
    return _split_tokens(list(tree.children), chars)  # type: ignore[arg-type]


def _split_many(texts: list[str]) -> list[_Split]:
    """Split many instruction lines with one pass of the grammar; _Unreadable names the
    index in `texts` of a line it could not read."""
    trimmed = [go_trim_space(t) for t in texts]
    present = [i for i, t in enumerate(trimmed) if t]
    splits: list[_Split] = []
    if present:
        doc = to_byte_chars("\n".join(trimmed[i] for i in present)) + "\n"
        try:
            tree = _grammar(doc, start="start")
        except _Unreadable as err:
            raise _Unreadable(present[min(err.index, len(present) - 1)]) from None
        for line in tree.children:
            splits.append(_split_tokens(line.children, doc))  # type: ignore[union-attr,arg-type]
    found = iter(splits)
    return [next(found) if t else _Split("", (), "") for t in trimmed]


def _parse_words(rest: str, escape: str) -> list[str]:
    """BuildKit's parseWords: blank-separated words, quotes and escapes kept in the text."""
    text = raw_bytes_to_replacement(rest)
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    phase = 0  # 0: between words, 1: in a word, 2: in a quote
    quote = ""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if phase == 0:
            if ch in GO_SPACE:
                i += 1
                continue
            phase = 1
        if phase == 1:
            if ch in GO_SPACE:
                phase = 0
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok = [], False
                i += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, 2
            if ch == escape:
                if i + 1 == n:
                    i += 1
                    continue  # an escape character at the very end is dropped
                word.append(ch)
                i += 1
                ch = text[i]
            word.append(ch)
            i += 1
            continue
        if ch == quote:
            phase = 1
        if ch == escape and quote != "'":
            if i + 1 == n:
                phase = 1
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = text[i]
        word.append(ch)
        i += 1
    if phase != 0 and (blank_ok or word):
        words.append("".join(word))
    return words


def _name_values(keyword: str, rest: str, escape: str, where: _Where) -> tuple[str, ...]:
    """ENV / LABEL: (key, value, separator) triples; separator "" for `ENV KEY value`."""
    words = _parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise where.error(
                f"{keyword} {parts[0]} has no value", hint=f"write {keyword} {parts[0]}=value"
            )
        return (parts[0], parts[1], "")
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise where.error(
                f"{keyword}: can't find = in {word!r}", hint="every word must be name=value"
            )
        key, value = word.split("=", 1)
        out += (key, value, "=")
    return tuple(out)


def _maybe_json(rest: str, where: _Where) -> tuple[tuple[str, ...], bool] | None:
    try:
        argv = go_json_strings(rest)
    except NotStringArray:
        raise where.error(
            "JSON array form must hold strings only",
            hint='write ["executable", "arg"] or use the shell form',
        ) from None
    return None if argv is None else (tuple(argv), True)


def _healthcheck(rest: str, where: _Where) -> tuple[tuple[str, ...], bool]:
    # BuildKit finds the type word byte by byte (unicode.IsSpace on single bytes).
    chars = rest if rest.isascii() else to_byte_chars(rest)
    sep = 0
    while sep < len(chars) and chars[sep] not in GO_BYTE_SPACE:
        sep += 1
    if sep == 0:
        return (), False
    nxt = sep
    while nxt < len(chars) and chars[nxt] in GO_BYTE_SPACE:
        nxt += 1
    kind, command = chars[:sep], chars[nxt:]
    if chars is not rest:
        kind, command = from_byte_chars(kind), from_byte_chars(command)
    if command == "":
        return (kind,), False
    found = _maybe_json(command, where)
    if found is not None:
        return (kind, *found[0]), True
    return (kind, command), False


def _arguments(cmd: str, rest: str, escape: str, where: _Where) -> tuple[tuple[str, ...], bool]:
    """The argument strings of one instruction, and whether it is in JSON form."""
    if cmd in _JSON_OR_STRING:
        if rest == "":
            return (), False
        return _maybe_json(rest, where) or ((rest,), False)
    if cmd in _JSON_LIST:
        found = _maybe_json(rest, where)
        if found is not None:
            return found
        return (tuple(_WHITESPACE.split(rest)) if rest else ()), False
    if cmd in _WORDS:
        return (tuple(_WHITESPACE.split(rest)) if rest else ()), False
    if cmd in _STRING:
        return ((rest,) if rest else ()), False
    if cmd in ("ENV", "LABEL"):
        return _name_values(cmd, rest, escape, where), False
    if cmd == "ARG":
        return tuple(_parse_words(rest, escape)), False
    if cmd == "HEALTHCHECK":
        return _healthcheck(rest, where)
    return ("",), False  # unknown keyword: kept, the typed layer says "did you mean"


def _node(text: str, split: _Split, escape: str, where: _Where, depth: int = 0) -> Node:
    cmd = split.keyword.upper()
    inner: Node | None = None
    if cmd == "ONBUILD":
        if split.flags:
            raise where.error(
                f"ONBUILD takes no flags ({split.flags[0]})",
                hint="put flags after the inner instruction: ONBUILD COPY --from=x ...",
            )
        if depth >= _MAX_ONBUILD_DEPTH:
            raise where.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if split.rest:
            inner = _node(split.rest, _split_one(split.rest, where), escape, where, depth + 1)
        return Node(
            cmd=cmd,
            sub_cmd=inner.cmd if inner else None,
            json=inner.json if inner else False,
            original=text,
            start_line=where.start_line,
            end_line=where.end_line,
            flags=inner.flags if inner else (),
            value=inner.value if inner else (),
            column=where.column,
            source_line=where.source_line,
            inner=inner,
        )
    value, is_json = _arguments(cmd, split.rest, escape, where)
    return Node(
        cmd=cmd,
        sub_cmd=None,
        json=is_json,
        original=text,
        start_line=where.start_line,
        end_line=where.end_line,
        flags=split.flags,
        value=value,
        column=where.column,
        source_line=where.source_line,
    )


def _can_hold_heredocs(node: Node) -> bool:
    target = node.inner if node.cmd == "ONBUILD" and node.inner is not None else node
    return target.cmd in _HEREDOC_COMMANDS and not target.json


def _where(filename: str, line: LogicalLine, end_line: int) -> _Where:
    return _Where(filename, line.start_line, end_line, line.column, line.source_line)


def parse_syntax(text: str, filename: str = "Dockerfile") -> SyntaxTree:
    """Parse recipe text into one Node per instruction, exactly as BuildKit splits it.

    Raises RecipeError (with file, line and column) for what BuildKit's parser rejects:
    no instructions, a repeated or invalid directive, an unterminated heredoc, ENV/LABEL
    without a value, a JSON array holding non-strings.
    """
    lex = Prelexer(clean_surrogates(text), filename)
    # Lines without `<<` are split later in one grammar pass; lines that may open
    # heredocs must be understood now, to know whether the next lines are bodies.
    entries: list[tuple[LogicalLine, int, Node | None]] = []
    try:
        for line in lex.logical_lines():
            if "<<" not in line.text:
                entries.append((line, line.end_line, None))
                continue
            escape = lex.directives.escape
            where = _where(filename, line, line.end_line)
            node = _node(line.text, _split_one(line.text, where), escape, where)
            if _can_hold_heredocs(node):
                try:
                    specs = heredocs_in_line(line.text)
                except ValueError as err:
                    raise where.error(str(err)) from None
                docs = tuple(
                    Heredoc(
                        s.name,
                        s.file_descriptor,
                        lex.read_heredoc(s, line.start_line),
                        s.expand,
                        s.chomp,
                    )
                    for s in specs
                )
                inner = node.inner and record.replace(node.inner, heredocs=docs)
                node = record.replace(node, heredocs=docs, inner=inner, end_line=lex.line_number)
            entries.append((line, node.end_line, node))
    except RecipeError:
        _finish(entries, lex.directives.escape, filename)  # an earlier error comes first
        raise
    if not entries:
        last = max(lex.line_number, 1)
        raise RecipeError(
            "the recipe has no instructions",
            SourceLocation(filename, last, 1),
            hint="a recipe starts with FROM (or ARG)",
        )
    nodes = _finish(entries, lex.directives.escape, filename)
    warnings = tuple(
        f"{filename}:{line.start_line}: empty continuation line in {node.cmd} "
        "(BuildKit will make this an error)"
        for (line, _, _), node in zip(entries, nodes, strict=True)
        if line.empty_continuation
    )
    return SyntaxTree(filename, lex.directives, nodes, warnings)


def _finish(
    entries: list[tuple[LogicalLine, int, Node | None]], escape: str, filename: str
) -> tuple[Node, ...]:
    todo = [(line, end_line) for line, end_line, node in entries if node is None]
    try:
        splits = iter(_split_many([line.text for line, _ in todo])) if todo else iter(())
    except _Unreadable as err:
        line, end_line = todo[err.index]
        where = _where(filename, line, end_line)
        raise where.error(_UNREADABLE, hint=_UNREADABLE_HINT) from None
    nodes: list[Node] = []
    for line, end_line, node in entries:
        if node is None:
            where = _where(filename, line, end_line)
            node = _node(line.text, next(splits), escape, where)
        nodes.append(node)
    return tuple(nodes)
