"""A long line costs time in proportion to its length (issue 11, item 20).

A 1 MB LABEL took 21 s and 512 KB 3.8 s: the expander grew each word by `+=` on an
attribute, copying the word at every character. The test compares two sizes of the same
line in the same run rather than timing one against a budget: a linear cost makes the
1 MB line about 4 times the 256 KB one, a quadratic cost about 16 times. The limit, 8,
leaves room for a noisy, shared machine; CPU time (not wall time) and the best of a few
runs keep other processes' load out of the figure.
"""

from __future__ import annotations

import time

from builder.recipe import load, resolve
from builder.recipe.expand import expand_word, expand_words

SMALL, LARGE = 256 << 10, 1 << 20
LINEAR_LIMIT = 8.0  # LARGE / SMALL is 4: linear ~4, quadratic ~16


def _parse_and_expand(text: str) -> None:
    recipe = load(text)
    for instr in recipe.instructions:
        resolve(instr, {}, recipe.escape)


def _cpu_seconds(text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        _parse_and_expand(text)
        best = min(best, time.process_time() - start)
    return best


def _label(size: int) -> str:
    return "FROM scratch\nLABEL a=" + "x" * size + "\n"


def test_a_1mb_label_costs_about_four_times_a_256kb_one() -> None:
    _parse_and_expand(_label(1024))  # the grammar is loaded outside the measure
    small = _cpu_seconds(_label(SMALL), runs=3)
    large = _cpu_seconds(_label(LARGE), runs=2)
    assert large / small < LINEAR_LIMIT, (small, large)


def test_a_long_word_comes_out_whole_and_split_where_it_should() -> None:
    word = "ab" * 100_000
    assert expand_word(word, {}) == word
    assert expand_word(f'"{word} {word}"', {}) == f"{word} {word}"
    assert expand_words(f"{word} ${{X}}{word}", {"X": "x y"}) == [word, "x", "y" + word]
    assert expand_words(f"{word}\\ {word}", {}) == [f"{word} {word}"]
