"""Deletions across layers (whiteouts) and the history an image records."""

# Recipe lines stay whole, one line of the recipe per source line, even past 100 columns.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, F, params

EXPORTED_HISTORY = """FROM busybox AS base
ENV foo=bar
COPY foo /foo2
FROM busybox
LABEL lbl=val
COPY --from=base foo2 foo3
WORKDIR /
RUN echo bar > foo4
RUN ["ls"]
EXPOSE 2375 5000 1234/udp
"""

CASES = [
    Case(
        "rm-dirs-whited-out",
        "testDuplicateWhiteouts (client_fileop_test.go)",
        "FROM busybox\nWORKDIR /wd\nRUN mkdir -p d0 d1; echo -n first > d1/bar\nRUN rm -rf d0 d1\n",
        absent=["/wd/d0", "/wd/d1", "/wd/d1/bar"],
        last_layer=["wd/.wh.d0", "wd/.wh.d1"],
    ),
    Case(
        "rm-file-whited-out",
        "testWhiteoutParentDir (client_fileop_test.go)",
        "FROM busybox\nRUN mkdir -p /foo && echo -n first > /foo/bar\nRUN rm /foo/bar\n",
        files={"/foo": F(kind="dir")},
        absent=["/foo/bar"],
        last_layer=["foo/.wh.bar"],
    ),
    Case(
        "rm-base-file",
        "testWhiteoutParentDir (client_fileop_test.go)",
        "FROM busybox\nRUN rm /etc/group\n",
        absent=["/etc/group"],
        files={"/etc/passwd": F(contains=["root"])},
        last_layer=["etc/.wh.group"],
    ),
    Case(
        "replaced-dir-is-opaque",
        "testWhiteoutParentDir (client_fileop_test.go)",
        "FROM busybox\nRUN mkdir -p /d && echo -n 1 > /d/old\nRUN rm -rf /d && mkdir /d && echo -n 2 > /d/new\n",
        files={"/d/new": "2"},
        absent=["/d/old"],
    ),
    Case(
        "rm-symlink-not-target",
        "testRmSymlink (client_fileop_test.go)",
        "FROM busybox\nRUN echo -n t > /target && ln -s /target /link\nRUN rm /link\n",
        files={"/target": "t"},
        absent=["/link"],
        last_layer=[".wh.link"],
    ),
    Case(
        "file-replaced-by-dir",
        "testContextChangeDirToFile",
        "FROM busybox\nRUN echo -n f > /x\nRUN rm /x && mkdir /x && echo -n in > /x/y\n",
        files={"/x": F(kind="dir"), "/x/y": "in"},
    ),
    Case(
        "exported-history",
        "testExportedHistory",
        EXPORTED_HISTORY,
        context={"foo": "contents0"},
        history=[
            ("LABEL lbl=val", True),
            ("COPY foo2 foo3 # buildkit", False),
            ("WORKDIR /", True),
            ("RUN /bin/sh -c echo bar > foo4 # buildkit", False),
            ("RUN ls # buildkit", False),
            ("EXPOSE [1234/udp 2375/tcp 5000/tcp]", True),
        ],
    ),
    Case(
        "history-flattens-args-into-run",
        "testExportedHistoryFlattenArgs",
        "FROM busybox\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls /etc/\n",
        history=[
            ("ARG foo=bar", True),
            ("ARG bar=123", True),
            ("ARG foo=bar2", True),
            ("RUN |2 foo=bar2 bar=123 /bin/sh -c ls /etc/ # buildkit", False),
        ],
    ),
    Case(
        "history-build-arg-value-in-run",
        "testExportedHistoryFlattenArgs",
        "FROM busybox\nARG v=default\nRUN true\n",
        flags=["--build-arg", "v=given"],
        history=[("ARG v=given", True), ("RUN |1 v=given /bin/sh -c true # buildkit", False)],
    ),
    Case(
        "history-copy-flags",
        "testExportedHistory",
        "FROM busybox\nCOPY --chown=1:1 --chmod=644 foo /dest\n",
        context={"foo": "x"},
        history=[("COPY --chown=1:1 --chmod=644 foo /dest # buildkit", False)],
    ),
    Case(
        "history-add",
        "testExportedHistory",
        "FROM busybox\nADD foo /dest\n",
        context={"foo": "x"},
        history=[("ADD foo /dest # buildkit", False)],
    ),
    Case(
        "history-workdir-creating-dir",
        "testExportedHistory",
        "FROM busybox\nWORKDIR /newdir\n",
        history=[("WORKDIR /newdir", False)],
    ),
    Case(
        "history-env-user-shell",
        "testExportedHistory",
        'FROM busybox\nENV a=1 b=2\nUSER daemon\nSHELL ["/bin/sh", "-ec"]\n',
        history=[("ENV a=1 b=2", True), ("USER daemon", True), ("SHELL [/bin/sh -ec]", True)],
    ),
    Case(
        "history-entrypoint-cmd",
        "testExportedHistory",
        'FROM busybox\nENTRYPOINT ["/bin/echo"]\nCMD echo hi\n',
        history=[('ENTRYPOINT ["/bin/echo"]', True), ('CMD ["/bin/sh" "-c" "echo hi"]', True)],
    ),
    Case(
        "history-from-scratch-copy-heredoc",
        "testDockerfileScratchConfig",
        "FROM scratch\nARG x\nCOPY foo /\n",
        context={"foo": "x"},
        history=[("ARG x", True), ("COPY foo / # buildkit", False)],
        history_base=0,
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_whiteouts_history(case: Case, behave: Any) -> None:
    behave(case)
