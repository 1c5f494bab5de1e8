"""Stages: FROM an image or a stage, --target, COPY --from, stage names, order."""

# Recipe lines stay whole, one line of the recipe per source line, even past 100 columns.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, F, Fails, params

OUT_OF_ORDER = (
    "FROM busybox AS target\nCOPY --from=build {} /out\n\n"
    "FROM busybox AS build\nCOPY /Dockerfile /d2\n\nFROM target\n"
)
CASE_STAGES = (
    "FROM busybox AS STAge0\nCOPY foo bar\nFROM busybox AS staGE1\n"
    "COPY --from=staGE0 bar baz\nFROM busybox\nCOPY --from=stage1 baz bax\n"
)

CASES = [
    Case(
        "copy-from-image-name",
        "testMultiStageImplicitFrom",
        "FROM scratch\nCOPY --from=busybox /etc/passwd test\n",
        files={"/test": F(contains=["root"])},
    ),
    Case(
        "copy-from-named-stage",
        "testMultiStageImplicitFrom",
        "FROM busybox AS golang\nRUN mkdir -p /usr/bin && echo -n foo > /usr/bin/go\n\n"
        "FROM scratch\nCOPY --from=golang /usr/bin/go go\n",
        files={"/go": "foo"},
    ),
    Case(
        "stage-names-case-insensitive",
        "testMultiStageCaseInsensitive",
        CASE_STAGES,
        flags=["--target", "Stage1"],
        context={"foo": "foo-contents"},
        files={"/baz": "foo-contents"},
        absent=["/bax"],
    ),
    Case(
        "copy-from-later-stage-d2",
        "testOutOfOrderStage",
        OUT_OF_ORDER.format("/d2"),
        fails=Fails(3, "needs to be defined before current stage"),
    ),
    Case(
        "copy-from-later-stage-dockerfile",
        "testOutOfOrderStage",
        OUT_OF_ORDER.format("/Dockerfile"),
        fails=Fails(3, "cannot copy from stage"),
    ),
    Case(
        "no-stages",
        "testEmptyStages",
        "ARG foo=bar\n",
        fails=Fails(3, "dockerfile contains no stages to build"),
    ),
    Case(
        "target-mistyped",
        "testTargetMistype",
        "FROM scratch AS build\nCOPY Dockerfile /out\n\nFROM scratch\nCOPY --from=build /out /\n",
        flags=["--target", "bulid"],
        fails=Fails(3, 'target stage "bulid" could not be found (did you mean build?)'),
    ),
    Case(
        "unneeded-stage-not-built",
        "testCopyChownExistingDir",
        "FROM busybox AS broken\nRUN exit 1\nFROM busybox AS good\nRUN echo -n ok > /ok\n",
        flags=["--target", "good"],
        files={"/ok": "ok"},
    ),
    Case(
        "stage-inherits-config",
        "testOnBuildInheritedStageRun",
        "FROM busybox AS base\nENV x=1\nWORKDIR /w\nUSER daemon\n"
        "FROM base\nRUN echo -n $x$(pwd)$(id -u) > /tmp/o\n",
        config={"WorkingDir": "/w", "User": "daemon"},
        env_has={"x": "1"},
    ),
    Case(
        "from-stage-by-arg",
        "testMultiArgs",
        "ARG base=busybox\nFROM $base AS one\nRUN echo -n 1 > /one\nFROM one\nRUN cat /one > /two\n",
        files={"/two": "1"},
    ),
    Case(
        "copy-from-stage-index",
        "testMultiStageImplicitFrom",
        "FROM busybox\nRUN echo -n zero > /z\nFROM scratch\nCOPY --from=0 /z /z\n",
        files={"/z": "zero"},
    ),
    Case(
        "stage-name-reused-fails",
        "testMultiStageCaseInsensitive",
        "FROM busybox AS a\nFROM busybox AS A\n",
        fails=Fails(3, "duplicate stage name"),
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_multistage(case: Case, behave: Any) -> None:
    behave(case)
