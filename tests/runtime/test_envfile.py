"""docker's --env-file format: literal values, comments, bare names from the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RunFailed
from builder.runtime.envfile import read_env_file


def test_env_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text(
        "# comment\n\n  A=1\nB=two words\nC='quoted'\nD=x=y\nE=\nHOSTVAR\nUNSET\n  # indented\n"
    )
    assert read_env_file(str(path), {"HOSTVAR": "h"}) == [
        "A=1", "B=two words", "C='quoted'", "D=x=y", "E=", "HOSTVAR=h"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"), [("=x\n", "no variable name"), ("A B=1\n", "contains whitespaces")]
)
def test_env_file_refusals(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "env"
    path.write_text(text)
    with pytest.raises(RunFailed, match=message):
        read_env_file(str(path), {})


def test_a_missing_env_file(tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match=r"open .*/nope: no such file or directory"):
        read_env_file(str(tmp_path / "nope"))
