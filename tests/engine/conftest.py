from __future__ import annotations

from pathlib import Path

import pytest

from builder.store import Store
from tests.engine.fakes import FakeExecutor


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


@pytest.fixture
def fake() -> FakeExecutor:
    return FakeExecutor()
