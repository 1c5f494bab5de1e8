"""Fixtures of the client tests that run against a scripted registry (scripted.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.registry.scripted import Script, serve


@pytest.fixture
def script() -> Script:
    """What the scripted registry answers; a test adds routes to it."""
    return Script()


@pytest.fixture
def host(script: Script) -> Iterator[str]:
    """The scripted registry's address, serving `script` for the test."""
    with serve(script) as address:
        yield address
