"""SOURCE_DATE_EPOCH (reproducible-builds.org): the one time a reproducible image may carry.

A build given an epoch writes it as every `created` it adds and clamps layer mtimes to it,
so the same inputs give the same image IDs at any hour, in any store, on any machine.
"""

from __future__ import annotations

from datetime import UTC, datetime

# 9999-12-31T23:59:59Z: RFC 3339 has four-digit years, and Python's datetime stops there.
MAX_EPOCH = 253_402_300_799


def parse_epoch(text: str) -> int:
    """Whole seconds since 1970 in decimal, as the spec defines it; ValueError otherwise.

    Negative values are refused: a tar mtime cannot be negative, so such an epoch could not
    be honoured in the layers.
    """
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a whole number of seconds since 1970")
    value = int(text)
    if value > MAX_EPOCH:
        raise ValueError(f"{text} is past the year 9999")
    return value


def created_at(epoch: int) -> str:
    """The RFC 3339 form BuildKit writes for an epoch: whole seconds, UTC, `Z`."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
