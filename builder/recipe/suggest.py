"""BuildKit's `(did you mean X?)`: the closest known word within an edit distance of 2.

Users search for BuildKit's exact wording, so the rule is its util/suggest: Levenshtein
distance below 3, the first closest option wins, an exact match suggests nothing, and a
case-insensitive search answers in the case the user wrote.
"""

from __future__ import annotations

from collections.abc import Iterable


def _distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _match_case(option: str, written: str) -> str:
    if written == written.lower():
        return option.lower()
    if written == written.upper():
        return option.upper()
    return option


def closest(value: str, options: Iterable[str], *, case_sensitive: bool) -> str | None:
    """The option `value` was probably meant to be, or None."""
    wanted = value if case_sensitive else value.lower()
    best, best_distance = None, 3
    for option in options:
        candidate = option if case_sensitive else option.lower()
        if candidate == wanted:
            return None  # the value is known: the error is about something else
        distance = _distance(wanted, candidate)
        if distance < best_distance:
            best = candidate if case_sensitive else _match_case(candidate, value)
            best_distance = distance
    return best
