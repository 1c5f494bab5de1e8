"""`builder parse` and `builder lint` through the real CLI, exit codes included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dockerfile

from builder.errors import RecipeError

RECIPE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox:1.36
FROM $BASE AS build
ENV A=1 B="two words"
RUN --mount=type=cache,target=/var/cache <<EOF
echo hi \\
  there
EOF
COPY --chown=1:1 ["a b", "/dst/"]
ONBUILD RUN echo later
CMD ["/bin/sh", "-c", "echo done"]
"""


def _builder(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_parse_json_matches_the_official_parser(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    recipe.write_text(RECIPE)
    result = _builder("parse", "--json", recipe)
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    theirs = dockerfile.parse_string(RECIPE)
    assert [o["cmd"] for o in ours] == [t.cmd.upper() for t in theirs]
    keys = {
        "cmd",
        "sub_cmd",
        "json",
        "original",
        "start_line",
        "end_line",
        "flags",
        "value",
        "heredocs",
    }
    for o, t in zip(ours, theirs, strict=True):
        assert set(o) == keys
        assert o["value"] == list(t.value), o["cmd"]
        assert o["flags"] == list(t.flags) or o["cmd"] == "ONBUILD"  # the wheel drops these
        assert (o["json"], o["start_line"], o["end_line"]) == (t.json, t.start_line, t.end_line)
        assert o["heredocs"] == [
            {"name": h.name, "file_descriptor": h.file_descriptor, "content": h.content}
            for h in t.heredocs
        ]


def test_parse_without_json_prints_the_tree(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    recipe.write_text("FROM a\nRUN echo hi\n")
    assert _builder("parse", recipe).stdout == '(from "a")\n(run "echo hi")\n'


def test_a_syntax_error_names_file_line_column_with_a_caret(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    recipe.write_text("FROM a\nENV PATH\n")
    result = _builder("parse", recipe)
    assert result.returncode == RecipeError.exit_code
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: Dockerfile:2:"), result.stderr
    assert "ENV PATH" in lines[1] and lines[2].strip() == "^"
    assert "Traceback" not in result.stderr


def test_lint_warnings_exit_zero_and_errors_exit_non_zero(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    recipe.write_text("FROM busybox\nMAINTAINER me\nCMD echo $UNDEFINED_THING\n")
    result = _builder("lint", recipe, "--build-arg", "NOBODY_USES=1")
    assert result.returncode == 0, result.stderr
    for rule in ("MaintainerDeprecated", "JSONArgsRecommended", "UnusedBuildArgs"):
        assert rule in result.stderr, result.stderr
    as_json = json.loads(_builder("lint", "--format", "json", recipe).stdout)
    assert {f["severity"] for f in as_json} == {"warning"}
    recipe.write_text("FROM busybox AS a\nFROM busybox AS a\n")
    result = _builder("lint", recipe)
    assert result.returncode == RecipeError.exit_code, result.stderr
    assert "error" in result.stderr
