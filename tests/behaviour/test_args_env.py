"""ARG and ENV: scope, defaults, expansion, build args, the automatic and proxy args."""

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, F, Fails, Src, params

DEFAULT_ENV_RECIPE = """ARG image=idlebox
FROM busy${image#idle} AS build
ARG my_arg
ENV my_arg "my_arg=${my_arg:-def_val}"
ENV my_trimmed_arg "${my_arg%%e*}"
COPY myscript.sh myscript.sh
RUN ./myscript.sh $my_arg $my_trimmed_arg
"""
SCRIPT = Src("#!/usr/bin/env sh\necho -n $my_arg $* > /out\n", mode=0o755)

TARGETSTAGE_RECIPE = """FROM busybox AS base
WORKDIR /out
RUN echo -n "value:$TARGETSTAGE" > /out/first
ARG TARGETSTAGE
RUN echo -n "value:$TARGETSTAGE" > /out/second

FROM scratch AS foo
COPY --from=base /out/ /

FROM scratch
COPY --from=base /out/ /
"""

CASES = [
    Case(
        "global-arg-in-from",
        "testGlobalArg",
        "ARG tag=nosuchtag\nFROM busybox:${tag}\n",
        flags=["--build-arg", "tag=latest"],
        config={"Cmd": ["sh"]},
    ),
    Case(
        "global-arg-error-message",
        "testGlobalArgErrors",
        'ARG FOO=${FOO:?"custom error"}\nFROM busybox\n',
        fails=Fails(3, "FOO: custom error"),
    ),
    Case(
        "global-arg-error-not-hit-with-build-arg",
        "testGlobalArgErrors",
        'ARG FOO=${FOO:?"custom error"}\nFROM busybox\n',
        flags=["--build-arg", "FOO=bar"],
        config={"Cmd": ["sh"]},
    ),
    Case(
        "arg-default-expansion-error",
        "testArgDefaultExpansion",
        'FROM scratch\nARG FOO\nARG BAR=${FOO:?"foo missing"}\n',
        fails=Fails(3, "FOO: foo missing"),
    ),
    Case(
        "arg-default-expansion-with-value",
        "testArgDefaultExpansion",
        'FROM scratch\nARG FOO\nARG BAR=${FOO:?"foo missing"}\n',
        flags=["--build-arg", "FOO=123"],
        history=[("ARG FOO=123", True), ("ARG BAR=123", True)],
        history_base=0,
    ),
    Case(
        "arg-default-not-evaluated-when-given",
        "testArgDefaultExpansion",
        'FROM scratch\nARG FOO\nARG BAR=${FOO:?"foo missing"}\n',
        flags=["--build-arg", "BAR=123"],
    ),
    Case(
        "multi-args-one-line",
        "testMultiArgs",
        'ARG a1="foo bar" a2=box\nARG a3="$a2-foo"\nFROM busy$a2 AS build\n'
        'ARG a3 a4="123 456" a1\nRUN echo -n "$a1:$a3:$a4" > /out\n'
        "FROM scratch\nCOPY --from=build /out .\n",
        files={"/out": "foo bar:box-foo:123 456"},
    ),
    Case(
        "quoted-meta-args",
        "testQuotedMetaArgs",
        'ARG a1="box"\nARG a2="$a1-foo"\nFROM busy$a1 AS build\nARG a2\nARG a3="bar-$a2"\n'
        "RUN echo -n $a3 > /out\nFROM scratch\nCOPY --from=build /out .\n",
        files={"/out": "bar-box-foo"},
    ),
    Case(
        "targetstage-named-target",
        "testTargetStageNameArg",
        TARGETSTAGE_RECIPE,
        flags=["--target", "foo"],
        files={"/first": "value:", "/second": "value:foo"},
    ),
    Case(
        "targetstage-default-target",
        "testTargetStageNameArg",
        TARGETSTAGE_RECIPE,
        files={"/first": "value:", "/second": "value:default"},
    ),
    Case(
        "targetstage-named-last-stage",
        "testTargetStageNameArg",
        TARGETSTAGE_RECIPE + "FROM scratch AS final\nCOPY --from=base /out/ /\n",
        files={"/first": "value:", "/second": "value:final"},
    ),
    Case(
        "builtin-proxy-args-reach-run",
        "testBuiltinArgs",
        "FROM busybox AS build\nARG FOO\nARG BAR\nARG BAZ=bazcontent\n"
        "RUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out\n"
        "FROM scratch\nCOPY --from=build /out /\n",
        flags=[
            *("--build-arg", "FOO=foocontents"),
            *("--build-arg", "http_proxy=hpvalue"),
            *("--build-arg", "NO_PROXY=npvalue"),
        ],
        files={"/out": "hpvalue::npvalue::foocontents::::bazcontent"},
    ),
    Case(
        "proxy-args-left-out-of-config-and-history",
        "testBuiltinArgs",
        "FROM busybox\nRUN echo -n $https_proxy > /p\n",
        flags=["--build-arg", "https_proxy=http://proxy:3128"],
        files={"/p": "http://proxy:3128"},
        env_lacks=["https_proxy"],
        history=[("RUN /bin/sh -c echo -n $https_proxy > /p # buildkit", False)],
    ),
    Case(
        "default-env-with-args-empty",
        "testDefaultEnvWithArgs",
        DEFAULT_ENV_RECIPE,
        context={"myscript.sh": SCRIPT},
        flags=["--build-arg", "my_arg="],
        files={"/out": "my_arg=def_val my_arg=def_val my_arg=d"},
        env_has={"my_arg": "my_arg=def_val", "my_trimmed_arg": "my_arg=d"},
    ),
    Case(
        "default-env-with-args-override",
        "testDefaultEnvWithArgs",
        DEFAULT_ENV_RECIPE,
        context={"myscript.sh": SCRIPT},
        flags=["--build-arg", "my_arg=override"],
        files={"/out": "my_arg=override my_arg=override my_arg=ov"},
    ),
    Case(
        "empty-string-arg-in-env",
        "testEmptyStringArgInEnv",
        "FROM busybox AS build\nARG FOO\nARG BAR=\nRUN env > env.txt\n"
        "FROM scratch\nCOPY --from=build env.txt .\n",
        files={"/env.txt": F(contains=["\nBAR=\n"], lacks=["FOO="])},
    ),
    Case(
        "env-percent-formatting",
        "testEnvEmptyFormatting",
        "FROM busybox AS build\nENV myenv foo%sbar\nRUN [ \"$myenv\" = 'foo%sbar' ]\n",
        env_has={"myenv": "foo%sbar"},
    ),
    Case(
        "env-legacy-form-takes-rest-of-line",
        "testEnvEmptyFormatting",
        "FROM scratch\nENV foo bar  baz\n",
        env_has={"foo": "bar  baz"},
        history=[("ENV foo=bar  baz", True)],
        history_base=0,
    ),
    Case(
        # One ENV's pairs see the environment from before that ENV, as in docker.
        "env-pairs-expand-from-before",
        "testDefaultEnvWithArgs",
        'FROM scratch\nENV a=1\nENV a=2 b="two words" c=$a\n',
        env_has={"a": "2", "b": "two words", "c": "1"},
    ),
    Case(
        "arg-reaches-run-not-config",
        "testBuiltinArgs",
        "FROM busybox\nARG foo=bar\nRUN echo -n $foo > /a\n",
        files={"/a": "bar"},
        env_lacks=["foo"],
    ),
    Case(
        "build-arg-overrides-default",
        "testBuiltinArgs",
        "FROM busybox\nARG foo=bar\nRUN echo -n $foo > /a\n",
        flags=["--build-arg", "foo=baz"],
        files={"/a": "baz"},
    ),
    Case(
        "env-overrides-arg",
        "testDefaultEnvWithArgs",
        "FROM busybox\nARG foo=a\nENV foo=b\nRUN echo -n $foo > /a\n",
        flags=["--build-arg", "foo=c"],
        files={"/a": "b"},
        env_has={"foo": "b"},
    ),
    Case(
        "global-arg-needs-redeclaring",
        "testQuotedMetaArgs",
        'ARG v=1\nFROM busybox\nRUN echo -n "[$v]" > /a\nARG v\nRUN echo -n "[$v]" > /b\n',
        files={"/a": "[]", "/b": "[1]"},
    ),
    Case(
        "global-arg-build-arg-reaches-redeclared",
        "testGlobalArg",
        "ARG v=1\nFROM busybox\nARG v\nRUN echo -n $v > /a\n",
        flags=["--build-arg", "v=2"],
        files={"/a": "2"},
    ),
    Case(
        "unused-build-arg-is-not-an-error",
        "testBuiltinArgs",
        "FROM busybox\nRUN true\n",
        flags=["--build-arg", "NOT_DECLARED=1"],
        env_lacks=["NOT_DECLARED"],
    ),
    Case(
        "env-expansion-modifiers",
        "testDefaultEnvWithArgs",
        "FROM scratch\nENV a=hello\nENV b=${a:+set} c=${nope:-dflt} d=${a#he} e=${a%lo}\n",
        env_has={"b": "set", "c": "dflt", "d": "llo", "e": "hel"},
    ),
    Case(
        "arg-without-value-not-in-env",
        "testEmptyStringArgInEnv",
        "FROM busybox\nARG FOO\nRUN env > /env.txt\n",
        files={"/env.txt": F(lacks=["FOO"])},
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_args_env(case: Case, behave: Any) -> None:
    behave(case)
