"""Hostile recipes through the real CLI: `builder build` and `builder lint` each end with one
`error:` line and the exit code of its class, never a traceback (issue 11: items 5, 15,
16, 17 and 20, and the cases that already held; and a .dockerignore that is not UTF-8).
The corpus is made here, by the test.

Every recipe starts FROM scratch and fails (or succeeds) before any step runs, so neither
a base image nor the sandbox is needed: an empty store per test is enough.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.errors import RecipeError, UsageError
from builder.recipe.source import MAX_RECIPE_BYTES
from tests.e2e.support import Builder

pytestmark = pytest.mark.e2e  # the real CLI; no root needed

USAGE, RECIPE = UsageError.exit_code, RecipeError.exit_code


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], None]  # writes the recipe at the path it is given
    status: int
    message: str  # in the `error:` line ("" when the recipe is good)


def _text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _garbage_text(path: Path) -> None:
    """Valid UTF-8 garbage: control characters, line breaks of every kind, escapes."""
    rng = random.Random(11)
    alphabet = "\x00\x1b\x85\x0b\x0c\r\t \u2028\u3000\ufeff\\`'\"$={}[]<<--#aZ\u00e9\U0001f600"
    path.write_text("".join(rng.choice(alphabet) for _ in range(1 << 20)))


def _nested(depth: int) -> str:
    return "${a:-" * depth + "z" + "}" * depth


CASES = {
    "dev-zero": Case(lambda p: p.symlink_to("/dev/zero"), USAGE, "is a character device"),
    "fifo": Case(lambda p: os.mkfifo(p), USAGE, "is a FIFO, not a recipe"),
    "over-4MiB": Case(
        _bytes(b"FROM scratch\n" + b"#" * MAX_RECIPE_BYTES),
        RECIPE,
        "Dockerfile is 4.0 MiB: larger than a recipe may be (the limit is 4 MiB)",
    ),
    "random-bytes": Case(
        _bytes(b"FROM scratch\n" + random.Random(5).randbytes(1 << 20)),
        RECIPE,
        "invalid UTF-8: byte 0x",
    ),
    "invalid-utf8": Case(
        _bytes(b"FROM scratch\nRUN echo \xff\xfe\n"), RECIPE, "Dockerfile:2:10: invalid UTF-8"
    ),
    "garbage-utf8": Case(_garbage_text, RECIPE, "Dockerfile:1:"),
    "nested-400": Case(
        _text(f"FROM scratch\nENV x={_nested(400)}\n"),
        RECIPE,
        "Dockerfile:2:1: ENV: ${...} nested deeper than 64 levels",
    ),
    "onbuild-chain": Case(
        _text("FROM scratch\n" + "ONBUILD " * 2000 + "RUN x\n"),
        RECIPE,
        "Dockerfile:2:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
    ),
    "nul-in-run": Case(
        _text("FROM scratch\nRUN echo a\0b\n"),
        RECIPE,
        "Dockerfile:2:11: RUN: a NUL byte cannot be part of an instruction",
    ),
    "nul-in-env": Case(
        _text("FROM scratch\nENV a=b\0c\n"),
        RECIPE,
        "Dockerfile:2:8: ENV: a NUL byte cannot be part of an instruction",
    ),
    "escape-sequences": Case(
        _text("FROM scratch\n\x1b[2J\x1b]0;pwned\x07 a\n"), RECIPE, "unknown instruction"
    ),
    "1MB-word-without-value": Case(
        _text("FROM scratch\nLABEL a=b " + "x" * (1 << 20) + "\n"), RECIPE, "LABEL: can't find ="
    ),
    # What already held, kept so:
    "missing": Case(lambda p: None, USAGE, "no recipe at"),
    "1MB-label": Case(_text("FROM scratch\nLABEL a=" + "x" * (1 << 20) + "\n"), 0, ""),
    "json-100000-deep": Case(
        _text("FROM scratch\nCMD " + "[" * 100_000 + "]" * 100_000 + "\n"), 0, ""
    ),
}


def _run(verb: str, recipe: Path, tmp_path: Path) -> tuple[int, str]:
    builder = Builder(tmp_path / "store")
    if verb == "build":
        context = tmp_path / "context"
        context.mkdir()
        result = builder("build", "--progress", "plain", "-f", recipe, context, check=False)
    else:
        result = builder("lint", recipe, check=False)
    return result.status, result.stderr


@pytest.mark.parametrize("verb", ["build", "lint"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_recipe_gets_one_error_line_and_its_exit_code(
    tmp_path: Path, name: str, verb: str
) -> None:
    case = CASES[name]
    recipe = tmp_path / "Dockerfile"
    case.make(recipe)
    status, stderr = _run(verb, recipe, tmp_path)
    assert "Traceback" not in stderr, stderr[-3000:]
    assert status == case.status, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if not case.status:
        assert errors == [], stderr[-3000:]
        return
    assert len(errors) == 1, stderr[-3000:]
    assert case.message in errors[0], errors[0]
    # The recipe's bytes are shown escaped and clipped: nothing drives the terminal, and
    # the error and its caret stay a few short lines whatever the recipe holds.
    assert not any(ch in stderr for ch in "\x00\x1b\x07\x85\u2028"), repr(stderr[-3000:])
    assert len(stderr) < 2000, stderr[:3000]


def test_a_dockerignore_that_is_not_utf8_is_read_byte_for_byte(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nLABEL a=b\n")
    (context / ".dockerignore").write_bytes(b"secret-\xff\n*.log\n")
    result = Builder(tmp_path / "store")("build", "-q", context, check=False)
    assert (result.status, "Traceback" in result.stderr) == (0, False), result.stderr
