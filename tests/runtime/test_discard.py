"""`run --rm`'s removal handed to the supervisor: the scratch name it moves the container to."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from builder.runtime.container import _Discard
from builder.store.containers import Container
from builder.store.scratch import owner_gone


def test_the_moved_container_belongs_to_the_supervisor(tmp_path: Path) -> None:
    # Named for the process that removes it: a sweep (the next command's) leaves it while
    # that process lives and takes it once it is gone (killed halfway).
    container = Container("ab" * 32, tmp_path / "home")
    discard = _Discard(tmp_path / "tmp", container, tmp_path / "state")
    live = discard._trash(os.getpid())
    assert live.parent == tmp_path / "tmp" and live.name.endswith("-" + "ab" * 6)
    assert owner_gone(live.name) is False
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert owner_gone(discard._trash(dead.pid).name) is True


def test_a_failed_move_leaves_the_removal_to_the_caller(tmp_path: Path) -> None:
    container = Container("cd" * 32, tmp_path / "missing-home")
    discard = _Discard(tmp_path / "tmp", container, tmp_path / "state")
    assert discard.handoff().move(os.getpid()) is False and not discard.moved
