"""BuildKit's `(did you mean X?)` rule (util/suggest): distance below 3, case kept."""

from __future__ import annotations

import pytest

from builder.recipe.suggest import closest

KEYWORDS = ("from", "run", "copy", "entrypoint", "cmd")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ENTRYPONT", "ENTRYPOINT"),  # the user's case: upper
        ("entrypont", "entrypoint"),
        ("Entrypont", "entrypoint"),  # mixed case: the option as known
        ("COPPY", "COPY"),
        ("RUNN", "RUN"),
        ("WORKDIRR", None),  # nothing within two edits
        ("RUN", None),  # known: the error is about something else
    ],
)
def test_case_insensitive(value: str, expected: str | None) -> None:
    assert closest(value, KEYWORDS, case_sensitive=False) == expected


def test_case_sensitive_and_the_first_closest_wins() -> None:
    assert closest("bulid", ["build", "test"], case_sensitive=True) == "build"
    assert closest("ab", ["ax", "ay"], case_sensitive=True) == "ax"
    assert closest("BUILD", ["build"], case_sensitive=True) is None  # 5 edits away
