"""Recipes BuildKit refuses, and the words it uses: one `error:` line, our exit code."""

# Recipe lines and reasons stay whole, even past 100 columns.

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, Fails, params

CASES = [
    Case(
        "unknown-instruction-suggests",
        "testDockerfileInvalidInstruction",
        'FROM scratch\nFNTRYPOINT ["/bin/sh", "-c", "echo invalidinstruction"]\n',
        fails=Fails(3, "unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)"),
    ),
    Case(
        "run-command-not-found",
        "testDockerfileInvalidCommand",
        "FROM busybox\nRUN invalidcmd\n",
        fails=Fails(5, "/bin/sh -c invalidcmd"),
    ),
    Case(
        "run-failure-words",
        "testDockerfileInvalidCommand",
        "FROM busybox\nRUN invalidcmd\n",
        fails=Fails(5, "did not complete successfully: exit code: 127"),
    ),
    Case(
        "circular-stage",
        "TestDockerfileCircularDependencies (dockerfile2llb/convert_test.go)",
        "FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n",
        fails=Fails(3, "circular dependency detected on stage: stage0"),
    ),
    Case(
        "missing-source-cache-key-words",
        "testHistoryError",
        "FROM scratch\nCOPY notexist /foo\n",
        fails=Fails(10, "failed to compute cache key: failed to calculate checksum of ref"),
    ),
    Case(
        "missing-source-not-found",
        "testHistoryError",
        "FROM scratch\nCOPY notexist /foo\n",
        fails=Fails(10, '"/notexist": not found'),
    ),
    Case(
        "from-needs-argument",
        "TestErrorsSourceMap (errors_test.go)",
        "FROM\n",
        fails=Fails(3, "FROM requires either one or three arguments"),
    ),
    Case(
        "env-needs-argument",
        "testErrorsSourceMap",
        "from busybox\nenv\n",
        fails=Fails(3, "ENV requires at least one argument"),
    ),
    Case(
        "workdir-needs-one-argument",
        "testErrorsSourceMap",
        "FROM busybox\nWORKDIR\n",
        fails=Fails(3, "WORKDIR requires exactly one argument"),
    ),
    Case(
        "copy-unknown-flag",
        "testErrorsSourceMap",
        "from scratch\nenv foo=bar\ncopy --foo=bar / /\nenv bar=baz\n",
        fails=Fails(3, "unknown flag: --foo"),
    ),
    Case(
        "copy-from-unknown-stage-or-image",
        "testErrorsSourceMap",
        "from scratch\nenv foo=bar\ncopy --from=invalid foo bar\nenv bar=baz\n",
        fails=Fails(9, "invalid"),  # our exit code for a registry we cannot reach
    ),
    Case(
        "run-before-from",
        "testErrorsSourceMap",
        "RUN true\nFROM busybox\n",
        fails=Fails(3, "no build stage in current context"),
    ),
    Case(
        "run-fails-with-exit-status",
        "testDockerfileInvalidCommand",
        "FROM busybox\nRUN exit 3\n",
        fails=Fails(5, "exit code: 3"),
    ),
    Case(
        "expose-invalid-port",
        "testExposeExpansion",
        "FROM scratch\nEXPOSE notaport\n",
        fails=Fails(3, "notaport"),
    ),
    Case(
        "arg-required-message",
        "testArgDefaultExpansion",
        "FROM busybox\nARG NEED\nRUN echo ${NEED:?must be set}\n",
        fails=Fails(5, "NEED: must be set"),  # the shell expands RUN, not the frontend
    ),
    Case(
        "healthcheck-bad-interval",
        "testExportedHistory",
        "FROM busybox\nHEALTHCHECK --interval=nope CMD true\n",
        fails=Fails(3, "nope"),
    ),
    Case(
        "onbuild-cannot-chain",
        "testOnBuildCleared",
        "FROM busybox\nONBUILD ONBUILD RUN true\n",
        fails=Fails(3, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ),
    Case(
        "onbuild-cannot-from",
        "testOnBuildCleared",
        "FROM busybox\nONBUILD FROM busybox\n",
        fails=Fails(3, "FROM isn't allowed as an ONBUILD trigger"),
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_errors(case: Case, behave: Any) -> None:
    behave(case)
