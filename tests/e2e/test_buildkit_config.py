"""Issue 10's recipe/config/history items through the real CLI: what docker build (BuildKit)
writes into the image config and history, and how it reads and runs the recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.image.config import DEFAULT_PATH
from tests.e2e.support import Builder, make_context


def _config(builder: Builder, name: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(builder("inspect", name).stdout)[0]["Config"]
    return config


def test_config_and_history_as_buildkit_writes_them(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox\n"
        "ARG foo=bar\n"
        "ARG bar=123\n"
        "ARG foo=bar2\n"
        "RUN echo $foo > /f\n"
        "EXPOSE 2375 5000 1234/udp\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        "VOLUME /data\n"
        "CMD echo hi\n"
    )
    context = make_context(tmp_path, recipe)
    builder("build", "-t", "hist", "--build-arg", "http_proxy=http://proxy:3128", context)
    config = _config(builder, "hist")
    assert config["config"]["ArgsEscaped"] is True
    assert config["config"]["Cmd"] == ["/bin/sh", "-ec", "echo hi"]
    assert not any("proxy" in e.lower() for e in config["config"]["Env"])
    lines = [h.get("created_by", "") for h in config["history"]][-8:]
    assert lines == [
        "ARG foo=bar",
        "ARG bar=123",
        "ARG foo=bar2",
        "RUN |2 foo=bar2 bar=123 /bin/sh -c echo $foo > /f # buildkit",
        "EXPOSE [1234/udp 2375/tcp 5000/tcp]",
        "SHELL [/bin/sh -ec]",
        "VOLUME [/data]",
        'CMD ["/bin/sh" "-ec" "echo hi"]',
    ]
    assert not any("proxy" in line for line in lines)


def test_scratch_gets_path_and_workdir(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM scratch\nCOPY a /a\n", {"a": "a"})
    builder("build", "-t", "scratchy", context)
    assert _config(builder, "scratchy")["config"] == {
        "Env": [f"PATH={DEFAULT_PATH}"],
        "WorkingDir": "/",
    }


def test_proxy_args_reach_run_without_an_arg(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN env | grep -i _proxy | sort > /p\n")
    builder("build", "-t", "proxied", "--build-arg", "no_proxy=example.com", context)
    out = builder("run", "--rm", "proxied", "cat", "/p").stdout
    assert out == "NO_PROXY=example.com\nno_proxy=example.com\n"


def test_targetstage_and_an_unevaluated_arg_default(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox AS base\n"
        "ARG MODE=${UNSET:?must_be_given}\n"
        'RUN echo -n "value:$TARGETSTAGE" > /first\n'
        "ARG TARGETSTAGE\n"
        'RUN echo -n "value:$TARGETSTAGE:$MODE" > /second\n'
        "FROM base AS foo\n"
        "FROM base\n"
    )
    context = make_context(tmp_path, recipe)
    builder("build", "-t", "ts", "--target", "foo", "--build-arg", "MODE=given", context)
    out = builder("run", "--rm", "ts", "cat", "/first", "/second").stdout
    assert out == "value:value:foo:given"
    failed = builder("build", "-t", "ts2", context, check=False)
    assert failed.status != 0 and "must_be_given" in failed.stderr


def test_text_after_a_json_array_is_shell_form(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, 'FROM busybox\nRUN ["echo","hello"]this is invalid\n')
    result = builder("build", "-t", "bad", "--progress", "plain", context, check=False)
    assert result.status != 0
    # /bin/sh ran the whole line, and failed on it (BuildKit's testInvalidJSONCommands)
    assert "this is invalid" in result.stderr


def test_heredoc_with_a_shebang_runs_its_interpreter(builder: Builder, tmp_path: Path) -> None:
    recipe = (
        "FROM busybox\n"
        "RUN <<EOF\n"
        "#!/usr/bin/awk -f\n"
        'BEGIN { print "awk ran me" > "/tmp/out" }\n'
        "EOF\n"
        "RUN <<EOF\n"
        "#!/bin/sh\n"
        'echo "$0" > /tmp/zero\n'
        "EOF\n"
    )
    builder("build", "-t", "shebang", make_context(tmp_path, recipe))
    out = builder("run", "--rm", "shebang", "cat", "/tmp/out", "/tmp/zero").stdout
    assert out == "awk ran me\n/dev/pipes/EOF\n"
    history = [h.get("created_by") for h in _config(builder, "shebang")["history"]]
    assert history[-1] == "RUN /bin/sh -c /dev/pipes/EOF # buildkit"


def test_messages_in_buildkits_words(builder: Builder, tmp_path: Path) -> None:
    recipe = "FROM busybox AS build\nFROM busybox AS stage0\nCOPY --from=stage0 /a /b\n"
    context = make_context(tmp_path, recipe)
    result = builder("build", context, check=False)
    assert "circular dependency detected on stage: stage0" in result.stderr
    context = make_context(tmp_path / "t", "FROM busybox AS build\nENTRYPONT x\n")
    result = builder("build", "--target", "bulid", context, check=False)
    assert "unknown instruction: ENTRYPONT (did you mean ENTRYPOINT?)" in result.stderr
    context = make_context(tmp_path / "u", "FROM busybox AS build\n")
    result = builder("build", "--target", "bulid", context, check=False)
    assert 'target stage "bulid" could not be found (did you mean build?)' in result.stderr


def test_import_with_changes_and_a_message(
    builder: Builder, busybox_rootfs: Path, tmp_path: Path
) -> None:
    builder(
        "import",
        "-c",
        'CMD ["echo", "from cmd"]',
        "-c",
        "ENV GREETING=hi",
        "--change",
        "WORKDIR /tmp",
        "-m",
        "my import",
        busybox_rootfs,
        "changed",
    )
    assert builder("run", "--rm", "changed").stdout == "from cmd\n"
    assert builder("run", "--rm", "changed", "sh", "-c", "echo $GREETING; pwd").stdout == (
        "hi\n/tmp\n"
    )
    config = _config(builder, "changed")
    assert config["history"] == [{"created": config["created"], "comment": "my import"}]
    refused = builder("import", "-c", "RUN true", busybox_rootfs, "nope", check=False)
    assert refused.status == 2 and "run is not a valid change command" in refused.stderr


def test_onbuild_run_heredoc_and_mount_run_in_the_child(builder: Builder, tmp_path: Path) -> None:
    parent = (
        "FROM busybox\n"
        "ONBUILD RUN <<EOF\n"
        'echo "hello world" >> /dest\n'
        "EOF\n"
        "ONBUILD RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /m\n"
    )
    builder("build", "-t", "parent", make_context(tmp_path / "p", parent))
    on_build = _config(builder, "parent")["config"]["OnBuild"]
    assert on_build == [
        'RUN <<EOF\necho "hello world" >> /dest\nEOF',
        "RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /m",
    ]
    builder("build", "-t", "child", make_context(tmp_path / "c", "FROM parent\n"))
    out = builder("run", "--rm", "child", "cat", "/dest", "/m").stdout
    assert out == "hello world\nx\n"
