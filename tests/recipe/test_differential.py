"""Differential test: our parser against BuildKit's Go parser (the PyPI `dockerfile` wheel).

The wheel embeds BuildKit 0.12.5; our parser follows the newer corpus. The comparison
normalises only these known, documented differences:

- cmd / sub_cmd: our contract (tree.py) upper-cases the keyword; the wheel keeps it as
  written (`run` stays `run`). Both sides are upper-cased.
- original: the wheel appends heredoc bodies and terminators to `original`; BuildKit's
  Node.Original (and ours) is the instruction line only. We compare the prefix.
- ONBUILD: the wheel drops the inner instruction's flags and heredocs (it reads the outer
  node); ours mirror the inner instruction's. They are cleared on our side.
- ONBUILD with flags before the inner keyword: we reject it at this stage (BuildKit
  rejects it one stage later); the wheel accepts it.
- The wheel raises UnicodeDecodeError when Go produced invalid UTF-8 (e.g. HEALTHCHECK's
  byte-wise split inside a character); such inputs are skipped.
- The wheel hands the text to Go as a C string, so it stops at the first NUL; generated
  text holds no NUL, and a JSON `\u0000` (a NUL in the result) is skipped the same way.
- `# check=` is not a directive in 0.12.5, so the generator never writes it.
- Text after an exec form's JSON array (`RUN ["a"] x`): 0.12.5 read the array with
  json.Decoder and ignored the rest; BuildKit 0.15 (80518e257) uses json.Unmarshal, so
  the line is shell form, as ours is. Such inputs are skipped.
"""

from __future__ import annotations

import json

import dockerfile
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError
from builder.recipe.dump import to_json
from builder.recipe.syntax import parse_syntax

KEYWORDS = [
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "COPY",
    "ADD",
    "VOLUME",
    "ENV",
    "LABEL",
    "ARG",
    "EXPOSE",
    "HEALTHCHECK",
    "USER",
    "WORKDIR",
    "STOPSIGNAL",
    "MAINTAINER",
    "ONBUILD",
    "FOO",
]
BLANKS = st.sampled_from([" ", "  ", "\t", " \t ", "\x0b", "\x0c", "\u00a0", "\u3000", "\u2003"])
ATOM = st.sampled_from(
    [
        "a",
        "b1",
        "x=y",
        "k=v w",
        "'q x'",
        '"d q"',
        "\\",
        "\\ ",
        "$V",
        "${V}",
        "é",
        "♥",
        "=",
        "--f",
        "-",
        "[",
        "]",
        "<<",
        "'",
        '"',
        "#",
        "`",
        "\u00a0",
        "\x85",
        "日本",
    ]
)
WORD = st.lists(ATOM, min_size=1, max_size=3).map("".join)
FLAG = st.builds(
    lambda name, value: f"--{name}" + (f"={value}" if value is not None else ""),
    st.sampled_from(["from", "mount", "chown", "x", "", "a-b"]),
    st.none() | WORD,
)
JSON_ARGS = st.lists(st.text(max_size=6), max_size=3).map(json.dumps) | st.sampled_from(
    ['["a", 1]', "['a']", '["a"', '[ "a" ] x', "[NaN]", "[]", '["a", ["b"]]', '[1e400, "a"]']
)


@st.composite
def instruction(draw: st.DrawFn) -> str:
    keyword = draw(st.sampled_from(KEYWORDS))
    keyword = draw(st.sampled_from([keyword, keyword.lower(), keyword.capitalize()]))
    if keyword.upper() == "ONBUILD":
        inner = draw(st.sampled_from([k for k in KEYWORDS if k != "ONBUILD"]))
        keyword = f"{keyword} {inner}"
    parts = [keyword]
    parts += draw(st.lists(FLAG, max_size=2))
    if draw(st.booleans()):
        parts.append("--")
    if draw(st.booleans()):
        parts.append(draw(JSON_ARGS))
    else:
        parts += draw(st.lists(WORD, max_size=4))
    line = draw(BLANKS).join(parts)
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(line)))
        cont = draw(st.sampled_from(["\\\n", "\\  \n", "\\\n# comment\n", "\\\n\n", "\\\n  \\\n"]))
        line = line[:cut] + cont + line[cut:]
    return line


@st.composite
def heredoc(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["EOF", "END", "X1"]))
    marker = draw(st.sampled_from(["<<", "<<-", "3<<"]))
    quote = draw(st.sampled_from(["", "'", '"']))
    cmd = draw(st.sampled_from(["RUN", "RUN cat", "COPY", "ADD", "ONBUILD RUN", 'RUN ["a"]']))
    tail = draw(st.sampled_from(["", " /dst", " && echo done"]))
    body = draw(st.lists(st.sampled_from(["line", "\tindented", "", "EOFX", "RUN x"]), max_size=3))
    term = ("\t" if marker == "<<-" and draw(st.booleans()) else "") + name
    return "\n".join([f"{cmd} {marker}{quote}{name}{quote}{tail}", *body, term])


LINE = st.one_of(
    instruction(),
    instruction(),
    heredoc(),
    st.sampled_from(["", "# a comment", "   # indented comment", "  ", "\\"]),
)
DIRECTIVES = st.lists(
    st.sampled_from(["# syntax=docker/dockerfile:1", "# escape=`", "#escape=\\", "# Escape = `"]),
    max_size=2,
)


@st.composite
def recipe(draw: st.DrawFn) -> str:
    lines = draw(DIRECTIVES) + draw(st.lists(LINE, min_size=1, max_size=8))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text += "\n"
    if draw(st.integers(0, 5)) == 0:
        text = text.replace("\n", "\r\n")
    if draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    return text


def _theirs(text: str) -> list[dict[str, object]] | None:
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError:
        return None
    except UnicodeDecodeError:
        assume(False)
        raise
    out: list[dict[str, object]] = []
    for c in commands:
        out.append(
            {
                "cmd": (c.cmd or "").upper(),
                "sub_cmd": c.sub_cmd.upper() if c.sub_cmd else None,
                "json": c.json,
                "original": c.original or "",  # the wheel gives None for ""
                "start_line": c.start_line,
                "end_line": c.end_line,
                "flags": list(c.flags),
                "value": list(c.value),
                "heredocs": [
                    {"name": h.name, "file_descriptor": h.file_descriptor, "content": h.content}
                    for h in c.heredocs
                ],
            }
        )
    return out


def _ours(text: str) -> list[dict[str, object]] | None:
    try:
        objs = to_json(parse_syntax(text))
    except RecipeError as err:
        if "ONBUILD takes no flags" in err.message:
            assume(False)
        return None
    for obj in objs:
        obj["cmd"] = str(obj["cmd"]).upper()
        if obj["cmd"] == "ONBUILD":
            obj["flags"], obj["heredocs"] = [], []
    return objs


_LENIENT = json.JSONDecoder()


def _text_after_array(command: dict[str, object]) -> bool:
    """Whether the wheel read this exec form by ignoring text after its array."""
    if not command["json"]:
        return False
    original = str(command["original"])
    for start in (i for i, ch in enumerate(original) if ch == "["):
        try:
            value, end = _LENIENT.raw_decode(original, start)
        except ValueError:
            continue
        # HEALTHCHECK's value is its type word (CMD, or any word) before the array.
        array = command["value"]
        if command["cmd"] == "HEALTHCHECK" and isinstance(array, list):
            array = array[1:]
        if value == array and original[end:].strip(" \t\r\n"):
            return True
    return False


def test_text_after_a_healthcheck_array_is_known_as_the_wheels_leniency() -> None:
    """HEALTHCHECK's value starts with its type word: the check must look past it (found by
    test_matches_buildkit: the wheel read `w [ "a" ] x` as ["w", "a"], the corpus as text)."""
    lenient = _theirs('FROM a\nHEALTHCHECK --from=k=v w [ "a" ] x')
    strict = _theirs('FROM a\nHEALTHCHECK w [ "a" ]')
    assert lenient is not None and strict is not None
    assert [_text_after_array(c) for c in lenient] == [False, True]
    assert [_text_after_array(c) for c in strict] == [False, False]


def _compare(text: str) -> None:
    assume("\\u0000" not in text)  # the wheel truncates result strings at a NUL
    ours, theirs = _ours(text), _theirs(text)
    assume(not any(_text_after_array(c) for c in theirs or ()))
    if ours is None or theirs is None:
        assert ours is None and theirs is None, (ours, theirs)
        return
    assert len(ours) == len(theirs), (ours, theirs)
    for mine, other in zip(ours, theirs, strict=True):
        their_original = str(other.pop("original"))
        my_original = str(mine.pop("original"))
        assert their_original.startswith(my_original), (my_original, their_original)
        if not other["heredocs"]:
            assert their_original == my_original
        assert mine == other


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe())
def test_matches_buildkit(text: str) -> None:
    _compare(text)


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=60,
    )
)
def test_matches_buildkit_on_any_text(text: str) -> None:
    _compare("FROM a\n" + text)
