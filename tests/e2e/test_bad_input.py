"""Bad input ends with one `error:` line, a distinct exit code, no traceback, the store intact."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from builder import errors
from tests.e2e.support import Builder, make_context


def _index(root: Path) -> str:
    """The image index: what a failed build must leave exactly as it was. (Blobs and cache
    records of the steps that succeeded stay, as docker keeps them: they are consistent.)"""
    return hashlib.sha256((root / "layout" / "index.json").read_bytes()).hexdigest()


def _assert_consistent(root: Path) -> None:
    proc = subprocess.run(
        ["oci-image-tool", "validate", "--type", "image", str(root / "layout")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    leftovers = list((root / "tmp").iterdir()) if (root / "tmp").exists() else []
    assert leftovers == [], leftovers


CASES = [
    pytest.param(None, errors.UsageError.exit_code, "no recipe at", id="missing-recipe"),
    pytest.param(
        "FROM busybox\nCOPPY a b\n",
        errors.RecipeError.exit_code,
        "Dockerfile:2:",
        id="unknown-instruction",
    ),
    # A base the store lacks is pulled; a registry that cannot be reached is exit 9. (A 404
    # from a reachable one is exit 4: tests/e2e/test_registry.py, with the test registry.)
    pytest.param(
        "FROM nohost.invalid/nosuchimage:1.0\nRUN true\n",
        errors.RegistryError.exit_code,
        "Dockerfile:1: FROM nohost.invalid/nosuchimage:1.0: cannot reach registry nohost.invalid",
        id="from-unreachable-registry",
    ),
    pytest.param(
        "FROM busybox\nRUN echo before\nRUN exit 3\n",
        errors.StepFailed.exit_code,
        'Dockerfile:3: RUN exit 3: process "/bin/sh -c exit 3" did not complete successfully:'
        " exit code: 3",
        id="run-fails",
    ),
    pytest.param(
        "FROM busybox\nCOPY --chmod=999 Dockerfile /x\n",
        errors.RecipeError.exit_code,
        "Dockerfile:2:6: invalid chmod parameter: '999'. it should be octal string",
        id="copy-bad-chmod",
    ),
    pytest.param(
        "FROM busybox\nUSER nosuch\nRUN true\n",
        errors.StepFailed.exit_code,
        "Dockerfile:3: RUN true: unable to find user nosuch: no matching entries in passwd file",
        id="run-unknown-user",
    ),
    pytest.param(
        "FROM busybox\nCOPY missing.txt /x\n",
        errors.BuildContextError.exit_code,
        "missing.txt",
        id="copy-missing-source",
    ),
]


@pytest.mark.parametrize(("recipe", "code", "message"), CASES)
def test_bad_input(
    builder: Builder, tmp_path: Path, recipe: str | None, code: int, message: str
) -> None:
    before = _index(builder.root)
    result = builder(
        "build", "--progress", "plain", "-t", "bad", make_context(tmp_path, recipe), check=False
    )
    assert result.status == code, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert message in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert _index(builder.root) == before
    _assert_consistent(builder.root)
    assert builder("inspect", "bad", check=False).status == errors.ImageNotFound.exit_code


def test_unknown_instruction_shows_the_line_a_caret_and_a_suggestion(
    builder: Builder, tmp_path: Path
) -> None:
    result = builder("build", make_context(tmp_path, "FROM busybox\nCOPPY a b\n"), check=False)
    lines = result.stderr.splitlines()
    assert "did you mean COPY?" in lines[0], result.stderr
    assert "COPPY a b" in lines[1]
    assert lines[2].strip() == "^"


def test_exit_codes_are_distinct() -> None:
    classes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BuilderError)
    ]
    codes = [cls.exit_code for cls in classes]
    assert len(codes) == len(set(codes)), {c.__name__: c.exit_code for c in classes}


def test_add_checksum_on_a_local_file_is_an_error(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nADD --checksum=sha256:00 Dockerfile /x\n")
    result = builder("build", context, check=False)
    assert result.status == errors.RecipeError.exit_code
    assert "checksum requires HTTP(S) or Git sources" in result.stderr
