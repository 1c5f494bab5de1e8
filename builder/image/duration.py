"""Go's time.ParseDuration, the syntax of every duration docker stores (HEALTHCHECK's).

A duration is an optional sign, then "0" alone or a sequence of decimal numbers, each with
an optional fraction and a unit: "300ms", "-1.5h", "2h45m", ".5s". Values are nanoseconds,
computed as Go computes them (a fraction goes through a float64, as in Go), so the image
config holds the number docker would write.
"""

from __future__ import annotations

from collections.abc import Mapping

_UNITS: Mapping[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX = (1 << 63) - 1


class DurationError(ValueError):
    """Not a Go duration; the message is Go's ("time: invalid duration ...")."""


def _digits(text: str, i: int) -> tuple[int, int, int, bool]:
    """Leading decimal digits of text[i:]: (value, digit count, next index, overflowed)."""
    value, count, overflow = 0, 0, False
    while i < len(text) and "0" <= text[i] <= "9":
        if not overflow:
            value = value * 10 + ord(text[i]) - 48
            overflow = value > 1 << 63
        count += 1
        i += 1
    return value, count, i, overflow


def _fraction(text: str, i: int) -> tuple[int, float, int]:
    """Go's leadingFraction: digits after the point, and their scale, ignoring the digits
    that would overflow (they cannot change a float64 anyway)."""
    value, scale, overflow = 0, 1.0, False
    while i < len(text) and "0" <= text[i] <= "9":
        if not overflow:
            if value > _MAX // 10:
                overflow = True
            else:
                value = value * 10 + ord(text[i]) - 48
                scale *= 10
        i += 1
    return value, scale, i


def parse_duration(text: str) -> int:
    """Nanoseconds in `text`, or DurationError."""
    invalid = DurationError(f'time: invalid duration "{text}"')
    i, negative = 0, False
    if text[:1] in ("-", "+"):
        negative, i = text[0] == "-", 1
    if text[i:] == "0":
        return 0
    if i == len(text):
        raise invalid
    total = 0
    while i < len(text):
        whole, whole_digits, i, overflow = _digits(text, i)
        if overflow:
            raise invalid
        frac, scale, frac_digits = 0, 1.0, 0
        if i < len(text) and text[i] == ".":
            start = i + 1
            frac, scale, i = _fraction(text, start)
            frac_digits = i - start
        if whole_digits == 0 and frac_digits == 0:
            raise invalid  # no digits at all (".s", "s")
        unit_start = i
        while i < len(text) and text[i] != "." and not "0" <= text[i] <= "9":
            i += 1
        unit_text = text[unit_start:i]
        if not unit_text:
            raise DurationError(f'time: missing unit in duration "{text}"')
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError(f'time: unknown unit "{unit_text}" in duration "{text}"')
        if whole > (1 << 63) // unit:
            raise invalid
        value = whole * unit
        if frac:
            value += int(float(frac) * (unit / scale))
        total += value
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > _MAX:
        raise invalid
    return total


def _decimal(value: int, unit: int) -> str:
    """`value / unit` as Go prints it: the fraction without trailing zeros."""
    whole, frac = divmod(value, unit)
    digits = len(str(unit)) - 1
    return f"{whole}" + (f".{frac:0{digits}d}".rstrip("0") if frac else "")


def format_duration(ns: int) -> str:
    """Go's time.Duration.String(): "0s", "100ms", "1.5µs", "1h0m30s"."""
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u == 0:
        return "0s"
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_decimal(u, 1_000)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_decimal(u, 1_000_000)}ms"
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text
