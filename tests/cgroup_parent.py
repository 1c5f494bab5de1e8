"""A cgroup parent of a test's own (--cgroup-parent), checked empty and removed after it:
the way tests show that no cgroup of ours is left behind."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from builder.sandbox.cgroups import hierarchies


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    name = f"/builder-test-{secrets.token_hex(4)}"
    yield name
    left = []
    for h in hierarchies():
        path = h.mount + name
        if os.path.isdir(path):
            left += [e.name for e in os.scandir(path) if e.is_dir()]
            os.rmdir(path)
    assert left == [], f"cgroups left behind: {left}"
