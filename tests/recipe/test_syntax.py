"""Our own parser cases: heredocs, BOM, CRLF, the escape directive, errors, Go quirks."""

from __future__ import annotations

import dockerfile
import pytest

from builder.errors import RecipeError
from builder.recipe.dump import dump, to_json
from builder.recipe.gostr import go_quote
from builder.recipe.syntax import parse_syntax
from builder.recipe.tree import Heredoc


def _heredocs(text: str) -> list[tuple[Heredoc, ...]]:
    return [n.heredocs for n in parse_syntax(text).nodes]


def _oracle_heredocs(text: str) -> list[list[tuple[str, int, str]]]:
    # The PyPI package runs BuildKit's Go parser (0.12.5): names, fds and bodies agree.
    return [
        [(h.name, h.file_descriptor, h.content) for h in c.heredocs]
        for c in dockerfile.parse_string(text)
    ]


def _ours(text: str) -> list[list[tuple[str, int, str]]]:
    return [[(h.name, h.file_descriptor, h.content) for h in hs] for hs in _heredocs(text)]


HEREDOC_CASES = [
    "FROM a\nRUN <<EOF\necho hi\nEOF\n",
    "FROM a\nRUN <<-EOF\n\techo hi\n\tEOF\n",
    "FROM a\nRUN <<'EOF'\necho $HOME\nEOF\n",
    'FROM a\nCOPY <<"A" <<B /dst/\nbody a\nA\nbody b\nB\n',
    "FROM a\nRUN <<EOF bash -ex\nset -x\nEOF\n",
    "FROM a\nRUN cat 3<<EOF\nthree\nEOF\n",
    "FROM a\nADD <<EOF /x\n\nEOF\n",
    "FROM a\nRUN <<eo'f' cat\nx\neof\n",
    "FROM a\nRUN <<E\\OF\nx\nEOF\n",
    "FROM a\nRUN ['<<EOF']\nRUN x\n",
    'FROM a\nRUN ["cat", "<<EOF"]\nEOF\n',
    "FROM a\nRUN echo <<EOF \\\n  && true\nbody\nEOF\n",
    "FROM a\nRUN <<EOF\r\nwindows\r\nEOF\r\n",
    "FROM a\nRUN <<EOF\nno newline at the end\nEOF",
]


@pytest.mark.parametrize("text", HEREDOC_CASES)
def test_heredocs_match_buildkit(text: str) -> None:
    assert _ours(text) == _oracle_heredocs(text)


def test_heredoc_flags() -> None:
    (_, run) = parse_syntax("FROM a\nRUN <<-'EOF'\n\tx\n\tEOF\n").nodes
    assert run.heredocs == (Heredoc("EOF", 0, "\tx\n", expand=False, chomp=True),)
    (_, run) = parse_syntax("FROM a\nRUN <<EOF\nx\nEOF\n").nodes
    assert run.heredocs[0].expand and not run.heredocs[0].chomp
    # A backslash-escaped quote is not quoting: the body is still expanded.
    (_, run) = parse_syntax("FROM a\nRUN <<eo\\'f\nx\neo'f\n").nodes
    assert run.heredocs[0].name == "eo'f" and run.heredocs[0].expand


def test_heredoc_line_numbers_and_following_instruction() -> None:
    tree = parse_syntax("FROM a\nCOPY <<A <<B /\na\nA\nb\nB\nRUN x\n")
    assert [(n.cmd, n.start_line, n.end_line) for n in tree.nodes] == [
        ("FROM", 1, 1),
        ("COPY", 2, 6),
        ("RUN", 7, 7),
    ]


def test_heredoc_inside_onbuild() -> None:
    (_, onbuild) = parse_syntax("FROM a\nONBUILD RUN <<EOF\nbody\nEOF\n").nodes
    assert onbuild.sub_cmd == "RUN" and onbuild.end_line == 4
    assert onbuild.heredocs == (Heredoc("EOF", 0, "body\n"),)
    assert onbuild.inner is not None and onbuild.inner.heredocs == onbuild.heredocs


def test_unterminated_heredoc() -> None:
    with pytest.raises(RecipeError, match="unterminated heredoc <<EOF") as info:
        parse_syntax("FROM a\nRUN <<EOF\nbody\n")
    assert info.value.location is not None and info.value.location.line == 2


def test_bom_and_crlf() -> None:
    tree = parse_syntax("\ufeffFROM a\r\nRUN echo \\\r\n  hi\r\n")
    assert dump(tree) == '(from "a")\n(run "echo   hi")\n'
    assert [n.source_line for n in tree.nodes] == ["FROM a", "RUN echo \\"]


def test_escape_directive_backtick() -> None:
    tree = parse_syntax("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo ok\n")
    assert tree.directives.escape == "`"
    assert dump(tree) == '(from "a")\n(run "dir c:\\\\   && echo ok")\n'


def test_directives_recorded_and_ended() -> None:
    tree = parse_syntax("# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a\n")
    assert (tree.directives.syntax, tree.directives.check) == ("docker/dockerfile:1", "skip=all")
    # A plain comment ends the directive block: the escape line is only a comment.
    tree = parse_syntax("# hello\n# escape=`\nFROM a\n")
    assert tree.directives.escape == "\\"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("# escape=`\n# escape=\\\nFROM a\n", "repeated", 2),
        ("# escape=x\nFROM a\n", "invalid escape directive", 1),
        ("FROM a\n\nENV PATH\n", "ENV PATH has no value", 3),
        ("FROM a\nLABEL a=b c\n", "can't find =", 2),
        ('FROM a\nCMD ["a", 1]\n', "strings only", 2),
        ("# just a comment\n\n", "no instructions", 2),
        ("", "no instructions", 1),
    ],
)
def test_errors_carry_line_and_column(text: str, message: str, line: int) -> None:
    with pytest.raises(RecipeError, match=message) as info:
        parse_syntax(text, filename="Recipe")
    loc = info.value.location
    assert loc is not None and (loc.filename, loc.line, loc.column) == ("Recipe", line, 1)
    assert str(info.value).startswith(f"Recipe:{line}:1: ")


def test_error_column_is_the_keyword_column() -> None:
    with pytest.raises(RecipeError) as info:
        parse_syntax("FROM a\n    ENV PATH\n")
    loc = info.value.location
    assert loc is not None and (loc.line, loc.column) == (2, 5)
    assert loc.source_line == "    ENV PATH"
    assert info.value.render().splitlines()[-1] == " " * 11 + "^"


def test_first_error_in_file_order() -> None:
    # ENV on line 2 fails before the unterminated heredoc on line 3 is read.
    with pytest.raises(RecipeError, match="ENV") as info:
        parse_syntax("FROM a\nENV X\nRUN <<EOF\n")
    assert info.value.location is not None and info.value.location.line == 2


def test_onbuild_outer_flags_rejected() -> None:
    with pytest.raises(RecipeError, match="ONBUILD takes no flags"):
        parse_syntax("FROM a\nONBUILD --x RUN y\n")


def test_onbuild_mirrors_inner() -> None:
    (onbuild,) = parse_syntax("ONBUILD copy --from=b a /c\n").nodes
    assert (onbuild.cmd, onbuild.sub_cmd, onbuild.flags, onbuild.value) == (
        "ONBUILD",
        "COPY",
        ("--from=b",),
        ("a", "/c"),
    )
    assert dump(parse_syntax("ONBUILD copy --from=b a /c\n")) == (
        '(onbuild (copy ["--from=b"] "a" "/c"))\n'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo bar\n", '(foo "")\n'),  # unknown keywords are kept
        ('RUN --a=\'x y\' --b="c\\"d" -- --e f\n', '(run ["--a=x y" "--b=c\\"d"] "--e f")\n'),
        # json.Unmarshal since BuildKit 0.15: text after the array makes it shell form
        ('CMD ["a"] trailing\n', '(cmd "[\\"a\\"] trailing")\n'),
        (
            'RUN ["echo","hello"]this is invalid\n',
            '(run "[\\"echo\\",\\"hello\\"]this is invalid")\n',
        ),
        ('VOLUME ["/a"] x\n', '(volume "[\\"/a\\"]" "x")\n'),
        ('SHELL ["a"]["b"]\n', '(shell "[\\"a\\"][\\"b\\"]")\n'),
        ('CMD ["a"] \t\n', '(cmd "a")\n'),  # JSON blanks after the array are fine
        ("CMD [NaN]\n", '(cmd "[NaN]")\n'),  # not JSON in Go: shell form
        ('CMD ["a", 1e400]\n', '(cmd "[\\"a\\", 1e400]")\n'),
        ("RUN a\x1c\n", '(run "a\\x1c")\n'),  # U+001C is not a Go space
        ("RUN \u3000x\u3000\n", '(run "x")\n'),  # U+3000 is
        ("COPY --chown=é a b\n", '(copy ["--chown=Ã©"] "a" "b")\n'),  # flags are bytes in Go
        ("ENV a=\u00a0\n", '(env "a" "" "=")\n'),
    ],
)
def test_buildkit_quirks(text: str, expected: str) -> None:
    assert dump(parse_syntax(text)) == expected


def test_go_quote() -> None:
    assert go_quote('a"\\\t\x00\x7f\u00a0♥\U0001f600\U000e0001') == (
        '"a\\"\\\\\\t\\x00\\x7f\\u00a0♥😀\\U000e0001"'
    )
    assert go_quote("\udcff") == '"\\xff"'  # an invalid UTF-8 byte (surrogateescape)


def test_to_json_shape() -> None:
    text = "FROM a\nENV A=1 B 2\nENV K V W\nRUN <<EOF\nx\nEOF\n"
    with pytest.raises(RecipeError):
        to_json(parse_syntax(text))  # `B 2`: B has no `=`
    objs = to_json(parse_syntax("FROM a\nENV K V W\nRUN <<EOF\nx\nEOF\n"))
    assert objs[1]["value"] == ["K", "V W"]
    assert objs[2] == {
        "cmd": "RUN",
        "sub_cmd": None,
        "json": False,
        "original": "RUN <<EOF",
        "start_line": 3,
        "end_line": 5,
        "flags": [],
        "value": ["<<EOF"],
        "heredocs": [{"name": "EOF", "file_descriptor": 0, "content": "x\n"}],
    }


def test_empty_continuation_warning() -> None:
    tree = parse_syntax("FROM a\nRUN a \\\n\n  b\n")
    assert tree.nodes[1].value == ("a   b",)
    assert len(tree.warnings) == 1 and "Dockerfile:2" in tree.warnings[0]
