"""BuildKit's own shell-lexer tables, run against expand.py.

The data lives outside the repo (shared/conformance/buildkit-shell); see tests/shared.py for
what happens when it is absent.
"""

from __future__ import annotations

import pytest

from builder.recipe.expand import ExpansionError, expand_word, expand_words
from tests.shared import shared_path

DATA = shared_path("conformance/buildkit-shell", module_level=True)
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_rows() -> list[tuple[int, str, str, str]]:
    rows = []
    path = DATA / "envVarTest"
    if not path.exists():  # reported by test_data_present; keep collection alive
        return []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.strip().split("|")
        assert len(fields) == 3, f"envVarTest:{number}: {line!r}"
        platform, source, expected = (f.strip() for f in fields)
        assert platform in ("A", "U", "W"), f"envVarTest:{number}: bad platform {platform!r}"
        rows.append((number, platform, source, expected))
    return rows


def _words_rows() -> list[tuple[int, dict[str, str], str, list[str]]]:
    rows = []
    path = DATA / "wordsTest"
    if not path.exists():
        return []
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env = {**env, key: value}
            continue
        fields = line.split("|")
        assert len(fields) == 2, f"wordsTest:{number}: {line!r}"
        rows.append((number, dict(env), fields[0].strip(), fields[1].lstrip(" ").split(",")))
    return rows


ENV_ROWS = _env_var_rows()
WORDS_ROWS = _words_rows()


def test_data_present() -> None:
    assert (DATA / "envVarTest").is_file(), f"conformance data missing: {DATA}"
    assert (DATA / "wordsTest").is_file(), f"conformance data missing: {DATA}"
    assert len(ENV_ROWS) == 230
    assert sum(1 for row in ENV_ROWS if row[1] == "W") == 2
    assert len(WORDS_ROWS) == 24


@pytest.mark.parametrize(
    ("number", "platform", "source", "expected"),
    [row for row in ENV_ROWS if row[1] != "W"],
    ids=[f"line{row[0]}" for row in ENV_ROWS if row[1] != "W"],
)
def test_env_var_table(number: int, platform: str, source: str, expected: str) -> None:
    # W rows are Windows-only (case-insensitive names); they are not applicable on Linux and
    # are filtered out above rather than marked as passed.
    if expected == "error":
        with pytest.raises(ExpansionError):
            expand_word(source, ENV)
    else:
        assert expand_word(source, ENV) == expected


@pytest.mark.parametrize(
    ("number", "env", "source", "expected"),
    WORDS_ROWS,
    ids=[f"line{row[0]}" for row in WORDS_ROWS],
)
def test_words_table(number: int, env: dict[str, str], source: str, expected: list[str]) -> None:
    try:
        result = expand_words(source, env)
    except ExpansionError:
        result = ["error"]
    assert result == expected
