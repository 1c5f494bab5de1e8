"""buildx's `key=value,key=value` flag values (-o, --cache-to, --cache-from), read as CSV so
a value may be quoted; keys are case-insensitive and given once."""

from __future__ import annotations

from builder.errors import UsageError


def parse_attrs(flag: str, value: str) -> dict[str, str]:
    """The keys and values of one flag value; UsageError naming FLAG and what is wrong."""
    import csv  # here: a build without such flags does not pay for its import

    try:
        (fields,) = csv.reader([value])
    except (csv.Error, ValueError):
        raise UsageError(f"{flag} {value!r}: not a list of key=value") from None
    attrs: dict[str, str] = {}
    for field in fields:
        key, eq, val = field.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise UsageError(f"{flag} {value!r}: {field!r} is not key=value")
        if key in attrs:
            raise UsageError(f"{flag} {value!r}: {key} is given twice")
        attrs[key] = val
    return attrs
