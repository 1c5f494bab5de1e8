""".dockerignore and <recipe>.dockerignore: what the context shows to COPY and bind mounts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, Fails, params

IGNORE_CONTEXT = {
    "foo": "foo-contents",
    "bar": "bar-contents",
    "baz": "baz-contents",
    "bay": "bay-contents",
    ".dockerignore": "ba*\nDockerfile\n!bay\n.dockerignore\n",
}

CASES = [
    Case(
        "patterns-and-exceptions",
        "testDockerignore",
        "FROM scratch\nCOPY . .\n",
        context=IGNORE_CONTEXT,
        files={"/foo": "foo-contents", "/bay": "bay-contents"},
        absent=["/bar", "/baz", "/Dockerfile", "/.dockerignore"],
    ),
    Case(
        "ignored-dockerfile-still-read",
        "testDockerignore",
        "FROM scratch\nCOPY foo /foo\n",
        context={"foo": "x", ".dockerignore": "Dockerfile\n"},
        files={"/foo": "x"},
    ),
    Case(
        "lone-exclamation-invalid",
        "testDockerignoreInvalid",
        "FROM scratch\nCOPY . .\n",
        context={".dockerignore": "!\n"},
        fails=Fails(3, "dockerignore"),
    ),
    Case(
        "recipe-specific-ignore-file-wins",
        "testDockerignoreOverride",
        "FROM busybox\nCOPY . .\n",
        context={
            "Dockerfile.dockerignore": "bar\n",
            ".dockerignore": "foo\n",
            "foo": "contents0",
            "bar": "contents0",
        },
        files={"/foo": "contents0"},
        absent=["/bar"],
    ),
    Case(
        "double-star-and-dir-patterns",
        "testDockerignore",
        "FROM scratch\nCOPY . /c/\n",
        context={
            ".dockerignore": "**/*.log\nbuild/\n!keep.log\n",
            "a/b/c.log": "l",
            "keep.log": "k",
            "build/out": "o",
            "src/main": "m",
        },
        files={"/c/keep.log": "k", "/c/src/main": "m"},
        absent=["/c/a/b/c.log", "/c/build/out", "/c/build"],
    ),
    Case(
        "ignored-source-is-not-found",
        "testDockerignore",
        "FROM scratch\nCOPY bar /bar\n",
        context=IGNORE_CONTEXT,
        fails=Fails(10, "bar"),
    ),
    Case(
        "ignore-hides-from-bind-mount",
        "testDockerignore",
        "FROM busybox\nRUN --mount=target=/ctx ls -a /ctx > /listing\n",
        context=IGNORE_CONTEXT,
        files={"/listing": ".\n..\nbay\nfoo\n"},
    ),
    Case(
        "comments-and-leading-slash",
        "testDockerignore",
        "FROM scratch\nCOPY . /c/\n",
        context={
            ".dockerignore": "# a comment\n/foo\n ./bar \n",
            "foo": "f",
            "bar": "b",
            "baz": "z",
        },
        files={"/c/baz": "z"},
        absent=["/c/foo", "/c/bar"],
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_dockerignore(case: Case, behave: Any) -> None:
    behave(case)
