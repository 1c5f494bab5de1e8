"""Pattern operators and the other ${...} forms the BuildKit tables do not cover.

Expected values come from BuildKit's lex_test.go cases, and for the plain glob trims from
bash itself (the POSIX behaviour BuildKit imitates), run as an oracle.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from builder.recipe.expand import ExpansionError, expand_word, expand_words, process_word

BUILDKIT_CASES = [
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
        "/foo.*/*.txt - /foo..*.txt",
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
        "/tmp/bar.txt - /bar.txt",
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"},
        "/foo/b/c.txt - /foo/c.txt",
    ),
    (
        "${FOO/$N/$R}",
        {"FOO": "http://google.de", "N": "http://", "R": "https://"},
        "https://google.de",
    ),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO///}", {}, ""),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
    ("${BAR?bbb}", {"BAR": ""}, ""),
    ("${FOO:?aaa}", {"FOO": "xxx"}, "xxx"),
    (
        "v-${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz",
        {"TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
        "v-linux-arm-v7.tgz",
    ),
]


@pytest.mark.parametrize(("word", "env", "expected"), BUILDKIT_CASES)
def test_buildkit_cases(word: str, env: dict[str, str], expected: str) -> None:
    assert expand_word(word, env) == expected


@pytest.mark.parametrize(
    "word",
    [
        "${FOO//ww}",  # no closing separator
        "${FOO//}",
        "${FOO=aaa}",  # := and = are not supported (no assignment in a recipe)
        "${FOO=:aaa}",
        "${FOO=}",
        "${FOO:#x}",  # the `:` forms exist only for - + ?
        "${FOO:%x}",
        "${FOO#\\x}",  # only \* \? \\ are valid escapes in a pattern
        "${BAZ?ccc}",
        "${BAR:?bbb}",
        "${BAZ:?}",
    ],
)
def test_errors(word: str) -> None:
    with pytest.raises(ExpansionError):
        expand_word(word, {"FOO": "xxx", "BAR": ""})


def test_required_message_is_expanded() -> None:
    with pytest.raises(ExpansionError, match="VAR: message herex"):
        expand_word("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"})
    with pytest.raises(ExpansionError, match="VAR: message herex"):
        expand_word("${VAR?message here$ARG}", {"ARG": "x"})


def test_backtick_escape() -> None:
    # `# escape=`` ` recipes: the backtick escapes and the backslash is ordinary text.
    assert expand_word("c:\\dir`$X", {"X": "y"}, escape="`") == "c:\\dir$X"
    assert expand_word('"a`"b"', {}, escape="`") == 'a"b'


def test_matches_reported() -> None:
    result = process_word("${FOO:-x} $BAR ${BAZ}", {"BAR": "1"})
    assert result.matched == {"BAR"}
    assert result.unmatched == {"FOO", "BAZ"}


def test_skip_quotes_leaves_quotes_for_the_script() -> None:
    assert process_word("echo '$X' \"$X\"", {"X": "1"}, skip_quotes=True).text == "echo '1' \"1\""


def test_words_split_only_unquoted_expansions() -> None:
    assert expand_words("80/tcp ${P}", {"P": "443 8080"}) == ["80/tcp", "443", "8080"]
    assert expand_words("'${P}'", {"P": "a b"}) == ["${P}"]


BASH = shutil.which("bash")
TRIM_VALUES = ["aXbXc", "XXaa", "path/to/file.tar.gz", "", "aaa", "*x?y*"]
TRIM_PATTERNS = ["*X", "X*", "a*", "*.", ".*", "?", "??", "*", "a?b", "\\*", "*\\?*", "z"]


@pytest.mark.skipif(BASH is None, reason="bash is the oracle")
@pytest.mark.parametrize("op", ["#", "##", "%", "%%"])
def test_trims_agree_with_bash(op: str) -> None:
    assert BASH is not None
    cases = [(value, pattern) for value in TRIM_VALUES for pattern in TRIM_PATTERNS]
    script = "".join(
        f"V={_sq(value)}; printf '%s\\0' \"${{V{op}{pattern}}}\"\n" for value, pattern in cases
    )
    out = subprocess.run([BASH, "--norc", "-c", script], capture_output=True, check=True)
    expected = out.stdout.decode().split("\0")[:-1]
    assert len(expected) == len(cases)
    for (value, pattern), want in zip(cases, expected, strict=True):
        got = expand_word(f"${{V{op}{pattern}}}", {"V": value})
        assert got == want, (value, op, pattern)


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- resolve(): exactly the fields BuildKit expands ---------------------------------------

from builder.errors import RecipeError, SourceLocation  # noqa: E402
from builder.recipe import instructions as ins  # noqa: E402
from builder.recipe.resolve import resolve  # noqa: E402
from builder.recipe.tree import Heredoc  # noqa: E402

LOC = SourceLocation("Dockerfile", 4, 1, "X")
ENV = {"D": "/app", "U": "me", "P": "80 443", "V": "v1"}


def test_resolve_expands_the_expanded_fields() -> None:
    copy = ins.Copy(
        location=LOC,
        original="",
        sources=("'$D'/a", "$D/b"),
        dest='"$D"/',
        from_stage="$U",
        chown="$U:$U",
        chmod="07${V#v}5",
        heredocs=(
            Heredoc("EOF", 0, "x='$V'\n"),
            Heredoc("RAW", 0, "$V\n", expand=False),
        ),
    )
    got = resolve(copy, ENV, "\\")
    assert isinstance(got, ins.Copy)
    assert got.sources == ("$D/a", "/app/b") and got.dest == "/app/"
    assert got.from_stage == "$U"  # never expanded
    assert (got.chown, got.chmod, got.mode) == ("me:me", "0715", 0o715)  # parsed once expanded
    assert [d.content for d in got.heredocs] == ["x='v1'\n", "$V\n"]
    expose = resolve(ins.Expose(location=LOC, original="", ports=("$P", "8080/udp")), ENV, "\\")
    assert isinstance(expose, ins.Expose) and expose.ports == ("80", "443", "8080/udp")
    env = resolve(ins.Env(location=LOC, original="", pairs=(("K_$U", '"a $V"'),)), ENV, "\\")
    assert isinstance(env, ins.Env) and env.pairs == (("K_me", "a v1"),)
    run = ins.Run(
        location=LOC,
        original="",
        command=("echo $D",),
        exec_form=False,
        mounts=("type=cache,target=$D/c,id=$U",),
    )
    got_run = resolve(run, ENV, "\\")
    assert isinstance(got_run, ins.Run)
    assert got_run.command == ("echo $D",)
    assert got_run.mounts == ("type=cache,target=/app/c,id=me",)
    assert [(m.type, m.target, m.id) for m in got_run.run_mounts] == [("cache", "/app/c", "me")]


def test_resolve_leaves_commands_alone() -> None:
    for instr in (
        ins.Cmd(location=LOC, original="", command=("$D",), exec_form=True),
        ins.Entrypoint(location=LOC, original="", command=("echo $D",), exec_form=False),
        ins.Healthcheck(location=LOC, original="", test=("CMD-SHELL", "$D")),
    ):
        assert resolve(instr, ENV, "\\") == instr


def test_resolve_error_has_location() -> None:
    with pytest.raises(RecipeError) as info:
        resolve(ins.Workdir(location=LOC, original="", path="${D"), ENV, "\\")
    assert info.value.location == LOC
    assert str(info.value).startswith("Dockerfile:4:1: WORKDIR: syntax error: missing '}'")
