"""The update lock is re-entrant in one Store and exclusive across processes; a lease keeps
gc out."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.store.locks import GcLock, UpdateLock


def test_update_lock_nests(tmp_path: Path) -> None:
    lock = UpdateLock(tmp_path / "lock")
    with lock.held(), lock.held():
        pass
    with lock.held():  # released after the outer hold: taken again at once
        pass


def _hold(path: str, ready: multiprocessing.synchronize.Event) -> None:
    with UpdateLock(Path(path)).held():
        ready.set()
        time.sleep(0.5)


def test_update_lock_excludes_another_process(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path / "lock"), ready))
    proc.start()
    assert ready.wait(10)
    started = time.monotonic()
    with UpdateLock(tmp_path / "lock").held():
        waited = time.monotonic() - started
    proc.join(10)
    assert waited > 0.2


def test_lease_keeps_gc_out(tmp_path: Path) -> None:
    gc = GcLock(tmp_path / "gc.lock")
    with (
        gc.lease(),
        gc.lease(),  # leases share
        pytest.raises(StoreError) as refused,
        gc.exclusive(),
    ):
        pass
    # It names the holder (this process, by pid) and the command to run again, which exists.
    assert f"(pid {os.getpid()})" in str(refused.value)
    assert "run `builder prune` again when it ends" in str(refused.value)
    assert "gc" not in str(refused.value).replace("builder prune", "")
    with gc.exclusive():
        pass
