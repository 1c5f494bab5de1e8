"""engine/workers: a RUN's pump and layer writer run on kept threads, not new ones."""

from __future__ import annotations

import os
import threading
import time

import pytest

from builder.engine import workers


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "engine-worker"]


@pytest.fixture(autouse=True)
def _retired() -> None:
    workers.retire()


def test_a_worker_that_ended_its_job_takes_the_next() -> None:
    seen: list[threading.Thread] = []
    first = workers.start(lambda: seen.append(threading.current_thread()))
    assert first.join(10)
    time.sleep(0.05)  # (the worker rests once its job has returned)
    second = workers.start(lambda: seen.append(threading.current_thread()))
    assert second.join(10)
    assert seen[0] is seen[1] and seen[0] is not threading.current_thread()
    assert len(_workers()) == 1


def test_jobs_at_once_each_get_a_worker() -> None:
    """Two jobs that wait for each other (two stages' pumps) both end."""
    a, b = threading.Event(), threading.Event()
    one = workers.start(lambda: (a.set(), b.wait(10)))
    two = workers.start(lambda: (b.set(), a.wait(10)))
    assert one.join(10) and two.join(10)
    assert a.is_set() and b.is_set()


def test_retire_ends_the_idle_workers() -> None:
    assert workers.start(lambda: None).join(10)
    time.sleep(0.05)
    assert _workers()
    workers.retire()
    assert not _workers()


def test_an_idle_worker_ends_after_its_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "LINGER", 0.05)
    assert workers.start(lambda: None).join(10)
    deadline = time.monotonic() + 10
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _workers()
    assert workers.start(lambda: None).join(10)  # a new one for the next job


def test_a_forked_child_starts_workers_of_its_own() -> None:
    """The parent's idle workers are not in a forked child (the warm server forks its
    builds): a job given to one would never run."""
    assert workers.start(lambda: None).join(10)
    time.sleep(0.05)  # an idle worker in the parent
    pid = os.fork()
    if pid == 0:
        ran = threading.Event()
        ok = workers.start(ran.set).join(5) and ran.is_set()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_worker_handed_out_as_its_linger_ends_runs_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """start() takes an idle worker from the pool, then gives it the job: a worker whose
    wait timed out in between must wait for that job, not end (the job would never run,
    and a RUN's pump joined on it would hang the build)."""
    monkeypatch.setattr(workers, "LINGER", 0.3)
    assert workers.start(lambda: None).join(10)
    time.sleep(0.05)  # it rests in the pool, waiting up to LINGER
    pool = workers._POOL
    with pool._lock:  # start()'s first half: the worker is taken from the pool ...
        (worker,) = pool._idle
        pool._idle.clear()
    time.sleep(0.6)  # ... its wait times out meanwhile ...
    job = workers.Job(lambda: None)
    worker.give(job)  # ... and start()'s second half
    assert job.join(5)
