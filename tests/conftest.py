"""Markers every test folder shares.

`e2e` marks the end-to-end tests (the real CLI, a store per test); `needs_root` marks what
needs namespaces and overlayfs mounts, and skips, saying so, for a user who is not root. CI
runs as root, so there nothing is skipped. A folder whose every test needs root is marked
here; a single module marks itself with `pytestmark = pytest.mark.needs_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The real-registry fixtures (registry, tls_registry, token_registry, fault_proxy, …), for
# every folder: the client's own tests and the end-to-end ones both push and pull.
pytest_plugins = ["tests.registry.fixtures", "tests.cgroup_parent"]

_TESTS = Path(__file__).resolve().parent
_FOLDER_MARKS = {
    "e2e": (pytest.mark.e2e, pytest.mark.needs_root),
    "behaviour": (pytest.mark.e2e, pytest.mark.needs_root),
    "sandbox": (pytest.mark.needs_root,),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = item.path.relative_to(_TESTS) if item.path.is_relative_to(_TESTS) else None
        for mark in _FOLDER_MARKS.get(relative.parts[0] if relative else "", ()):
            item.add_marker(mark)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_root") and os.geteuid() != 0:
        pytest.skip("needs root: user namespaces as root and overlayfs mounts")
