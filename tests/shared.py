"""The data the tests read from `../shared` (corpora, oracle scripts), which is never copied
into the repo.

A fresh clone with no `../shared` beside it still collects: the tests that need a folder skip,
naming it. Under CI (`CI` set) `../shared` is always laid beside the clone, so there a missing
folder fails instead: the suite cannot go green by losing its oracle.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(relative: str, *, module_level: bool = False) -> Path:
    """`../shared/<relative>`, or a skip naming it when it is absent outside CI."""
    path = SHARED / relative
    if not path.exists() and not os.environ.get("CI"):
        pytest.skip(
            f"{path} is absent (no ../shared beside this clone)", allow_module_level=module_level
        )
    return path
