"""Go's time.ParseDuration, nanosecond for nanosecond."""

from __future__ import annotations

import pytest

from builder.image.duration import DurationError, format_duration, parse_duration

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("5s", 5 * S),
        (".5s", S // 2),
        ("5.s", 5 * S),
        ("1.5ms", 1_500_000),
        ("1h2m3.5s", 3600 * S + 120 * S + 3 * S + S // 2),
        ("2h45m", (2 * 3600 + 45 * 60) * S),
        ("-1.5h", -5400 * S),
        ("300ms", 300_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("10μs", 10_000),
        ("7ns", 7),
        ("1.0000000001s", S),  # the fraction goes through a float64, as in Go
        ("0.3333333333333h", 1_199_999_999_999),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
    ],
)
def test_valid(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("-", "invalid duration"),
        (".", "invalid duration"),
        (".s", "invalid duration"),
        ("s", "invalid duration"),
        ("5", "missing unit"),
        ("1h5", "missing unit"),
        ("5x", 'unknown unit "x"'),
        ("5 s", 'unknown unit " s"'),
        ("1e3s", 'unknown unit "e"'),
        ("9223372036854775808ns", "invalid duration"),
        ("3000000h", "invalid duration"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (100_000_000, "100ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-2_000_000, "-2ms"),
    ],
)
def test_format_is_gos_duration_string(ns: int, text: str) -> None:
    assert format_duration(ns) == text
    assert parse_duration(text) == ns
