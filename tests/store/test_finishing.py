"""store/finishing: jobs run in order behind the caller; after a failure the rest are
cleaned up, not run, and wait() raises that failure once."""

from __future__ import annotations

import threading

import pytest

from builder.errors import StoreError
from builder.store.finishing import Finisher


def test_jobs_run_in_order_off_the_callers_thread() -> None:
    finisher, done, threads = Finisher(), [], set()
    gate = threading.Event()
    finisher.submit(gate.wait)  # the caller goes on while the finisher waits
    for n in range(5):
        finisher.submit(lambda n=n: (done.append(n), threads.add(threading.get_ident())))
    assert done == []
    gate.set()
    finisher.wait()
    assert done == [0, 1, 2, 3, 4] and threading.get_ident() not in threads
    finisher.submit(lambda: done.append(5))  # usable again after a wait
    finisher.wait()
    assert done[-1] == 5


def test_after_a_failure_the_rest_is_cleaned_up_and_wait_raises_it_once() -> None:
    finisher, ran, cleaned = Finisher(), [], []

    def fail() -> None:
        raise StoreError("no room for the blob")

    finisher.submit(lambda: ran.append("a"), cleanup=lambda: cleaned.append("a"))
    finisher.submit(fail, cleanup=lambda: cleaned.append("fail"))
    finisher.submit(lambda: ran.append("b"), cleanup=lambda: cleaned.append("b"))
    finisher.submit(lambda: ran.append("c"))
    with pytest.raises(StoreError, match="no room"):
        finisher.wait()
    assert ran == ["a"] and cleaned == ["fail", "b"]
    finisher.wait()  # told once


def test_settle_waits_and_keeps_no_failure() -> None:
    finisher, ran = Finisher(), []
    gate = threading.Event()
    finisher.submit(gate.wait)
    finisher.submit(lambda: (_ for _ in ()).throw(OSError("gone")))
    finisher.submit(lambda: ran.append(1), cleanup=lambda: ran.append("cleaned"))
    threading.Timer(0.2, gate.set).start()
    finisher.settle()
    assert ran == ["cleaned"]
    finisher.wait()  # nothing left to tell
