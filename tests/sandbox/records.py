"""Which record classes (builder/record.py) have not compiled their __init__ yet."""

from __future__ import annotations

from collections.abc import Iterable


def lazy_records(classes: Iterable[type]) -> list[str]:
    """The names of `classes` whose __init__ is still the lazy one (compiled on first use)."""
    return [
        cls.__qualname__
        for cls in classes
        if getattr(cls.__dict__.get("__init__"), "compile_init", None) is not None
    ]
