"""Nodes (built by hand, as the parser yields them) to typed instructions."""

from __future__ import annotations

import pytest

from builder.errors import RecipeError
from builder.image.platform import Platform
from builder.recipe import instructions as ins
from builder.recipe import load
from builder.recipe.tree import Directives, Heredoc, Node, SyntaxTree
from builder.recipe.typed import to_instruction, to_instructions


def node(
    cmd: str,
    *value: str,
    flags: tuple[str, ...] = (),
    json: bool = False,
    heredocs: tuple[Heredoc, ...] = (),
    source: str | None = None,
    inner: Node | None = None,
) -> Node:
    text = source or " ".join((cmd, *flags, *value))
    return Node(
        cmd=cmd,
        sub_cmd=inner.cmd if inner else None,
        json=json,
        original=text,
        start_line=3,
        end_line=3,
        flags=flags,
        value=value,
        heredocs=heredocs,
        column=1,
        source_line=text,
        inner=inner,
    )


def typed(n: Node) -> ins.Instruction:
    return to_instruction(n, "Dockerfile")


def error(n: Node) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        typed(n)
    return info.value


def test_from_stage_name_lowercased_and_platform() -> None:
    host = Platform.host()
    flag = f"--platform={str(host).upper()}"
    got = typed(node("FROM", "busybox:1.36", "as", "Build", flags=(flag,)))
    assert isinstance(got, ins.From)
    assert (got.image, got.stage_name, got.platform) == ("busybox:1.36", "build", flag[11:])
    assert got.parsed_platform == host
    assert got.location.line == 3
    later = typed(node("FROM", "busybox", flags=("--platform=$BUILDPLATFORM",)))
    assert isinstance(later, ins.From) and later.parsed_platform is None  # resolve() parses it


def test_from_another_platform_is_refused() -> None:
    other = "linux/s390x" if Platform.host().architecture != "s390x" else "linux/amd64"
    err = error(node("FROM", "busybox", flags=(f"--platform={other}",)))
    assert err.message == f"FROM --platform={other}: cross-platform builds are not supported"
    assert err.location is not None and err.location.column == len("FROM ") + 1
    assert (
        "invalid --platform=a/b/c/d"
        in error(node("FROM", "x", flags=("--platform=a/b/c/d",))).message
    )


@pytest.mark.parametrize("value", [("a", "b"), ("a", "AS"), ("a", "AS", "b", "c"), ()])
def test_from_arity(value: tuple[str, ...]) -> None:
    err = error(node("FROM", *value))
    assert err.message == "FROM requires either one or three arguments"
    assert err.hint and err.hint.startswith("usage: FROM")


@pytest.mark.parametrize("name", ["1st", "a b", "x$y", "_x", "-a"])
def test_bad_stage_names(name: str) -> None:
    assert "invalid name for build stage" in error(node("FROM", "img", "AS", name)).message


def test_unknown_instruction_hint() -> None:
    err = error(node("COPPY", "a", "b"))
    assert err.message == "unknown instruction: COPPY"
    assert err.hint == "did you mean COPY?"
    assert str(err).startswith("Dockerfile:3:1: unknown instruction: COPPY")
    # BuildKit's words, in the case the user wrote
    assert str(error(node("entrypont", "x"))).endswith(
        "unknown instruction: entrypont (did you mean entrypoint?)"
    )


def test_unknown_flag_points_at_the_flag() -> None:
    err = error(node("COPY", "a", "b", flags=("--link", "--fromm=x")))
    assert err.message == "unknown flag: --fromm (did you mean from?)"  # BuildKit's words
    assert err.location is not None
    assert err.location.column == len("COPY --link ") + 1
    assert "^" in err.render()


@pytest.mark.parametrize(
    ("cmd", "flags", "message"),
    [
        ("COPY", ("--from",), "missing a value on flag: --from"),
        ("COPY", ("--from=a", "--from=b"), "duplicate flag specified: --from"),
        ("COPY", ("--link=yes",), "expecting boolean value for flag link, not: yes"),
        ("ADD", ("--from=x",), "unknown flag: --from"),
        ("RUN", ("--network=bridge",), "invalid --network=bridge"),
        ("RUN", ("--security=x",), "invalid --security=x"),
        ("FROM", ("--link",), "unknown flag: --link"),
        ("WORKDIR", ("--x=1",), "unknown flag: --x"),
    ],
)
def test_flag_errors(cmd: str, flags: tuple[str, ...], message: str) -> None:
    assert error(node(cmd, "a", "b", flags=flags)).message == message


def test_copy_flags() -> None:
    got = typed(
        node(
            "COPY",
            "a",
            "b",
            "/dst/",
            flags=(
                "--from=build",
                "--chown=1:2",
                "--chmod=0755",
                "--link=false",
                "--parents=false",
            ),
        )
    )
    assert isinstance(got, ins.Copy)
    assert got.sources == ("a", "b") and got.dest == "/dst/"
    assert (got.from_stage, got.chown, got.chmod, got.mode) == ("build", "1:2", "0755", 0o755)
    later = typed(node("COPY", "a", "b", flags=("--chmod=$MODE",)))
    assert isinstance(later, ins.Copy) and later.mode is None  # resolve() parses it


@pytest.mark.parametrize(
    ("flags", "unpack"), [((), None), (("--unpack",), True), (("--unpack=false",), False)]
)
def test_add_unpack(flags: tuple[str, ...], unpack: bool | None) -> None:
    got = typed(node("ADD", "a.tar", "/d/", flags=flags))
    assert isinstance(got, ins.Add) and got.unpack is unpack


@pytest.mark.parametrize(
    ("cmd", "flags", "value", "message", "word"),
    [
        ("COPY", ("--parents=true",), ("a", "b"), "COPY --parents is not supported yet", "--p"),
        ("COPY", ("--exclude=*.md",), ("a", "b"), "COPY --exclude is not supported yet", "--e"),
        ("ADD", (), ("https://x/y", "/d"), "ADD from a URL or git repository", "https:"),
        ("ADD", (), ("git@host:r.git", "/d"), "ADD from a URL or git repository", "git@"),
        ("ADD", ("--checksum=sha256:ab",), ("u", "/d"), "requires HTTP(S) or Git sources", "--c"),
        ("ADD", ("--checksum=sha256:ab",), ("u", "v", "/d"), "for multiple sources", "--c"),
        ("COPY", ("--from=$FOO",), ("a", "b"), "variable expansion is not supported for", "--f"),
        ("COPY", ("--from=${X:-b}",), ("a", "b"), "variable expansion is not supported", "--f"),
        ("EXPOSE", (), ("80", "notaport"), "invalid containerPort: notaport", "EXPOSE"),
        ("EXPOSE", (), ("80/xyz",), 'invalid port: "80/xyz": invalid proto: xyz', "EXPOSE"),
        ("EXPOSE", (), ("70000",), "invalid containerPort: 70000", "EXPOSE"),
        ("EXPOSE", (), ("x:80:90",), "invalid IP address: x", "EXPOSE"),
        ("STOPSIGNAL", (), ("NOTASIGNAL",), "invalid signal: NOTASIGNAL", "STOPSIGNAL"),
        ("STOPSIGNAL", (), ("0",), "invalid signal: 0", "STOPSIGNAL"),
        ("COPY", ("--chmod=999",), ("a", "b"), "invalid chmod parameter: '999'", "--chmod"),
        ("COPY", ("--chmod=10000",), ("a", "b"), "invalid chmod parameter: '10000'", "--chmod"),
        ("COPY", ("--chmod=u+q",), ("a", "b"), "invalid chmod parameter: 'u+q'", "--chmod"),
        ("RUN", ("--mount=type=ssh",), ("x",), "--mount type=ssh is not supported", "--mount"),
        ("RUN", ("--mount=from=$a,target=/t",), ("x",), "'from' doesn't support variable", "--m"),
    ],
)
def test_unsupported_and_invalid_values(
    cmd: str, flags: tuple[str, ...], value: tuple[str, ...], message: str, word: str
) -> None:
    err = error(node(cmd, *value, flags=flags))
    assert message in err.message
    assert err.location is not None and err.location.source_line is not None
    assert err.location.source_line[err.location.column - 1 :].startswith(word)


def test_flags_buildkit_takes_as_they_are() -> None:
    # --link: the files are the same as a plain COPY's; --keep-git-dir: BuildKit uses it
    # for a git source only and ignores it on a local one.
    assert isinstance(typed(node("COPY", "a", "b", flags=("--link",))), ins.Copy)
    assert isinstance(typed(node("ADD", "a", "b", flags=("--link",))), ins.Add)
    assert isinstance(typed(node("ADD", "a", "b", flags=("--keep-git-dir",))), ins.Add)
    got = typed(node("COPY", "a", "b", flags=("--from=build",)))
    assert isinstance(got, ins.Copy) and got.from_stage == "build"


@pytest.mark.parametrize(
    ("port", "keys"),
    [
        ("80", ["80/tcp"]),
        ("80/UDP", ["80/udp"]),
        ("8000-8002/sctp", ["8000/sctp", "8001/sctp", "8002/sctp"]),
        ("127.0.0.1:8080:80", ["80/tcp"]),
        ("[::1]:8080:80/udp", ["80/udp"]),
        ("5000-5000", ["5000/tcp"]),
    ],
)
def test_expose_ports_as_buildkit_parses_them(port: str, keys: list[str]) -> None:
    from builder.recipe.values import expose_ports

    assert expose_ports(port) == keys


@pytest.mark.parametrize("signal", ["SIGKILL", "term", "RTMIN+3", "sigrtmax-2", "9", "+15"])
def test_stopsignal_names_moby_takes(signal: str) -> None:
    got = typed(node("STOPSIGNAL", signal))
    assert isinstance(got, ins.Stopsignal) and got.signal == signal


def test_run_mounts_are_parsed() -> None:
    got = typed(node("RUN", "x", flags=("--mount=type=cache,target=/c", "--mount=target=/s")))
    assert isinstance(got, ins.Run)
    assert [(m.type, m.target) for m in got.run_mounts] == [("cache", "/c"), ("bind", "/s")]


@pytest.mark.parametrize("cmd", ["COPY", "ADD"])
def test_copy_needs_two_args(cmd: str) -> None:
    assert "requires at least two arguments" in error(node(cmd, "only")).message


def test_run_forms_and_mounts() -> None:
    shell = typed(
        node(
            "RUN",
            "echo $HOME && true",
            flags=("--mount=type=cache,target=/c", "--mount=type=tmpfs,target=/t"),
        )
    )
    assert isinstance(shell, ins.Run)
    assert shell.command == ("echo $HOME && true",) and not shell.exec_form
    assert shell.mounts == ("type=cache,target=/c", "type=tmpfs,target=/t")
    exec_ = typed(node("RUN", "/bin/sh", "-c", "x", json=True, flags=("--network=none",)))
    assert isinstance(exec_, ins.Run)
    assert exec_.exec_form and exec_.command == ("/bin/sh", "-c", "x")
    assert exec_.network == "none"


def test_env_label_keep_raw_values() -> None:
    got = typed(node("ENV", "a", '"x y"', "=", "b", "1", "="))
    assert isinstance(got, ins.Env)
    assert got.pairs == (("a", '"x y"'), ("b", "1"))
    label = typed(node("LABEL", "k", "v w", ""))
    assert isinstance(label, ins.Label) and label.pairs == (("k", "v w"),)


def test_arg_defaults() -> None:
    got = typed(node("ARG", 'a="1 2"', "b", "c="))
    assert isinstance(got, ins.Arg)
    assert got.args == (("a", '"1 2"'), ("b", None), ("c", ""))


@pytest.mark.parametrize("cmd", ["WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"])
def test_single_argument_instructions(cmd: str) -> None:
    assert "requires exactly one argument" in error(node(cmd)).message


def test_shell_must_be_json() -> None:
    assert "JSON form" in error(node("SHELL", "/bin/bash -c")).message
    got = typed(node("SHELL", "/bin/bash", "-c", json=True))
    assert isinstance(got, ins.Shell) and got.argv == ("/bin/bash", "-c")


def test_healthcheck_forms() -> None:
    shell = typed(node("HEALTHCHECK", "CMD", "curl -f x", flags=("--interval=5s", "--retries=3")))
    assert isinstance(shell, ins.Healthcheck)
    assert shell.test == ("CMD-SHELL", "curl -f x")
    assert (shell.interval, shell.retries) == (5_000_000_000, 3)
    exec_ = typed(node("HEALTHCHECK", "CMD", "foo", "bar", json=True, flags=("--timeout=1m30s",)))
    assert isinstance(exec_, ins.Healthcheck)
    assert exec_.test == ("CMD", "foo", "bar") and exec_.timeout == 90_000_000_000
    half = typed(node("HEALTHCHECK", "CMD", "x", flags=("--start-period=.5s", "--interval=0")))
    assert isinstance(half, ins.Healthcheck)
    assert (half.start_period, half.interval) == (500_000_000, 0)
    none = typed(node("HEALTHCHECK", "NONE"))
    assert isinstance(none, ins.Healthcheck) and none.test == ("NONE",)


@pytest.mark.parametrize(
    ("value", "flags", "message"),
    [
        (("CONNECT", "TCP 7000"), (), 'Unknown type "CONNECT" in HEALTHCHECK'),
        (("CMD",), (), "Missing command after HEALTHCHECK CMD"),
        (("NONE", "x"), (), "HEALTHCHECK NONE takes no arguments"),
        ((), (), "HEALTHCHECK requires at least one argument"),
        (("CMD", "x"), ("--interval=5",), "invalid duration --interval=5"),
        (("CMD", "x"), ("--retries=-1",), "invalid --retries=-1"),
        (("CMD", "x"), ("--retries=2147483648",), "invalid --retries=2147483648"),
        (("CMD", "x"), ("--timeout=1.5",), "invalid duration --timeout=1.5"),
        (("CMD", "x"), ("--interval=5x",), "invalid duration --interval=5x"),
        (("CMD", "x"), ("--interval=999us",), "--interval=999us is shorter than 1ms"),
        (("CMD", "x"), ("--start-interval=-1s",), "--start-interval=-1s is shorter than 1ms"),
    ],
)
def test_healthcheck_errors(value: tuple[str, ...], flags: tuple[str, ...], message: str) -> None:
    assert error(node("HEALTHCHECK", *value, flags=flags)).message == message


def test_onbuild() -> None:
    inner = node("RUN", "make", source="RUN make")
    got = typed(node("ONBUILD", "make", inner=inner, source="ONBUILD RUN make"))
    assert isinstance(got, ins.Onbuild)
    assert got.trigger == "RUN make"
    assert isinstance(got.instruction, ins.Run)
    chained = node("ONBUILD", inner=node("ONBUILD", "x"), source="ONBUILD ONBUILD x")
    assert "Chaining ONBUILD" in error(chained).message
    assert "isn't allowed" in error(node("ONBUILD", inner=node("FROM", "x"))).message


def test_heredocs_are_carried() -> None:
    doc = Heredoc(name="EOF", file_descriptor=0, content="hi $X\n")
    got = typed(node("COPY", "<<EOF", "/f", heredocs=(doc,)))
    assert isinstance(got, ins.Copy) and got.heredocs == (doc,)


def test_to_instructions_keeps_order() -> None:
    tree = SyntaxTree(
        "Dockerfile", Directives(), (node("FROM", "a"), node("RUN", "x"), node("CMD", "y"))
    )
    assert [i.keyword for i in to_instructions(tree)] == ["FROM", "RUN", "CMD"]


def test_security_insecure_types_for_the_build_to_judge() -> None:
    # Whether it may run depends on the build's --allow, which the recipe does not know.
    got = typed(node("RUN", "x", flags=("--security=insecure",)))
    assert isinstance(got, ins.Run) and got.security == "insecure"


def test_onbuild_run_with_a_heredoc_or_a_mount_is_a_trigger() -> None:
    """BuildKit's parseOnBuild: flags are the inner instruction's; a heredoc's body and
    terminator are part of the trigger, so that the child parses the whole of it again."""
    recipe = load(
        "FROM a\n"
        "ONBUILD RUN <<-EOF\n\techo hi > /x\nEOF\n"
        "ONBUILD RUN --mount=type=cache,target=/c make\n"
    )
    heredoc, mount = recipe.instructions[1:]
    assert isinstance(heredoc, ins.Onbuild) and isinstance(mount, ins.Onbuild)
    assert heredoc.trigger == "RUN <<-EOF\n\techo hi > /x\nEOF"
    assert mount.trigger == "RUN --mount=type=cache,target=/c make"
    assert isinstance(mount.instruction, ins.Run) and mount.instruction.mounts
    (child,) = load(heredoc.trigger).instructions
    assert isinstance(child, ins.Run) and child.heredocs[0].content == "\techo hi > /x\n"
