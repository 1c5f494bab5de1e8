"""SHELL, ENTRYPOINT and CMD: exec and shell forms, ArgsEscaped, what resets what."""

# Recipe lines stay whole, one line of the recipe per source line, even past 100 columns.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import NOT_SET, Case, Fails, params

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CASES = [
    Case(
        "cmd-exec-form-args-escaped",
        "testCmdShell",
        'FROM scratch\nCMD ["test"]\n',
        # BuildKit sets ArgsEscaped on every CMD (dispatchCmd), for the Docker image spec.
        config={"Cmd": ["test"], "ArgsEscaped": True},
        history=[('CMD ["test"]', True)],
        history_base=0,
    ),
    Case(
        "shell-then-entrypoint-clears-inherited-cmd",
        "testCmdShell",
        'FROM h10c-cmdshell-base\nSHELL ["ls"]\nENTRYPOINT my entrypoint\n',
        before=[("h10c-cmdshell-base", 'FROM scratch\nCMD ["test"]\n')],
        config={"Cmd": NOT_SET, "Entrypoint": ["ls", "my entrypoint"], "Shell": ["ls"]},
        history_base=1,
        history=[("SHELL [ls]", True), ('ENTRYPOINT ["ls" "my entrypoint"]', True)],
    ),
    Case(
        "scratch-entrypoint-shell-form-and-path",
        "testDefaultShellAndPath",
        "FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n",
        config={"Entrypoint": ["/bin/sh", "-c", "foo bar"], "Env": [PATH]},
    ),
    Case(
        # dispatchEntrypoint leaves ArgsEscaped alone: only CMD sets it.
        "entrypoint-shell-form-no-args-escaped",
        "testDefaultShellAndPath",
        "FROM scratch\nENTRYPOINT foo bar\n",
        config={"ArgsEscaped": NOT_SET},
    ),
    Case(
        "entrypoint-ignored-by-run",
        "testIgnoreEntrypoint",
        'FROM busybox\nENTRYPOINT ["/nosuchcmd"]\nRUN ["ls"]\n',
        config={"Entrypoint": ["/nosuchcmd"], "Cmd": NOT_SET},
    ),
    Case(
        "run-bad-json-is-shell-form",
        "testInvalidJSONCommands",
        'FROM busybox\nRUN ["echo", "hello"]this is invalid\n',
        fails=Fails(5, "this is invalid"),
    ),
    Case(
        "entrypoint-bad-json-is-shell-form",
        "testInvalidJSONCommands",
        "FROM busybox\nENTRYPOINT []random string\n",
        config={"Entrypoint": ["/bin/sh", "-c", "[]random string"]},
    ),
    Case(
        "cmd-shell-form",
        "testCmdShell",
        "FROM busybox\nCMD echo hi\n",
        config={"Cmd": ["/bin/sh", "-c", "echo hi"], "ArgsEscaped": True},
        history=[('CMD ["/bin/sh" "-c" "echo hi"]', True)],
    ),
    Case(
        "cmd-after-entrypoint-kept",
        "testCmdShell",
        'FROM busybox\nCMD ["a"]\nENTRYPOINT ["b"]\n',
        config={"Cmd": ["a"], "Entrypoint": ["b"]},
    ),
    Case(
        "entrypoint-then-cmd",
        "testCmdShell",
        'FROM busybox\nENTRYPOINT ["b"]\nCMD ["a"]\n',
        config={"Cmd": ["a"], "Entrypoint": ["b"]},
    ),
    Case(
        "shell-changes-cmd-shell-form",
        "testCmdShell",
        'FROM busybox\nSHELL ["/bin/busybox", "sh", "-c"]\nCMD echo hi\n',
        config={
            "Cmd": ["/bin/busybox", "sh", "-c", "echo hi"],
            "Shell": ["/bin/busybox", "sh", "-c"],
        },
    ),
    Case(
        "shell-runs-run",
        "testUserAdditionalGids",
        'FROM busybox\nSHELL ["/bin/busybox", "sh", "-c"]\nRUN echo -n $0 > /shell\n',
        files={"/shell": "sh"},
        history=[
            ("SHELL [/bin/busybox sh -c]", True),
            ("RUN /bin/busybox sh -c echo -n $0 > /shell # buildkit", False),
        ],
    ),
    Case(
        "shell-errexit-flags",
        "testUserAdditionalGids",
        'FROM busybox\nSHELL ["/bin/sh", "-euc"]\nRUN echo $UNSET_VARIABLE\n',
        fails=Fails(5, "UNSET_VARIABLE"),
    ),
    Case(
        "shell-needs-json",
        "testCmdShell",
        "FROM busybox\nSHELL /bin/sh -c\n",
        fails=Fails(3, "SHELL requires the arguments to be in JSON form"),
    ),
    Case(
        "shell-inherited-by-child-stage",
        "testCmdShell",
        'FROM busybox AS base\nSHELL ["/bin/busybox", "sh", "-c"]\nFROM base\nRUN echo -n $0 > /shell\n',
        files={"/shell": "sh"},
        config={"Shell": ["/bin/busybox", "sh", "-c"]},
    ),
    Case(
        "cmd-empty-exec-form",
        "testCmdShell",
        "FROM busybox\nCMD []\n",
        # Go's omitempty leaves an empty Cmd out of the config, so nothing is inherited either.
        config={"Cmd": NOT_SET, "ArgsEscaped": True},
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_shell_cmd(case: Case, behave: Any) -> None:
    behave(case)
