"""Canonical JSON: the exact bytes whose digest names a manifest, index or config."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8, no trailing newline.

    The same value always gives the same bytes, so the same image always gets the same digest.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
