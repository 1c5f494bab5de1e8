"""Threads kept for the build's next job: a RUN's output pump and its layer writer.

Each RUN started two threads (engine/steps/layer_step's OutputPump, engine/pending's
writer), and Thread.start waits until the new thread runs: 1-3 ms a start on a busy
machine, when the build's other threads (a layer still being written, the finisher) hold
the GIL. A worker that has ended its job waits for the next one instead, and a job handed
to it costs a lock release, no wait. More jobs at once than idle workers (stages that
build at once) start more workers.

A worker idle for LINGER seconds ends; `retire()` ends the idle ones now (a build's end:
the CLI's quick exit needs every other thread gone, and a forked child has none of them).
Workers are daemon threads, as the output pump's thread was: a job left running when the
interpreter exits (a build that failed without settling it) does not hold the exit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

LINGER = 5.0  # seconds a worker waits for its next job before it ends


class Job:
    """A function run by a worker; `join()` returns once it has returned (or raised: the
    function keeps its own errors, as a Thread's target does)."""

    __slots__ = ("_done", "_function")

    def __init__(self, function: Callable[[], object]) -> None:
        self._function = function
        self._done = threading.Event()

    def run(self) -> None:
        try:
            self._function()
        finally:
            self._done.set()

    def join(self, timeout: float | None = None) -> bool:
        """Whether the job has ended (waiting up to `timeout`, None: until it has)."""
        return self._done.wait(timeout)


class _Worker:
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._wake = threading.Lock()
        self._wake.acquire()  # released by give(), or by retire() with no job
        self._job: Job | None = None
        self.thread = threading.Thread(target=self._loop, name="engine-worker", daemon=True)
        self.thread.start()

    def give(self, job: Job | None) -> None:
        self._job = job
        self._wake.release()

    def _loop(self) -> None:
        while True:
            if not self._wake.acquire(timeout=LINGER):
                if self._pool.leave(self):
                    return  # (not handed out meanwhile: nobody gives it a job any more)
                # Handed out as the wait timed out: start() gives it a job right after.
                self._wake.acquire()
            job, self._job = self._job, None
            if job is None:  # retired
                return
            job.run()
            self._pool.rest(self)


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def start(self, function: Callable[[], object]) -> Job:
        job = Job(function)
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
        worker.give(job)
        return job

    def rest(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def leave(self, worker: _Worker) -> bool:
        """Whether an idle worker may end: not if it was just handed out (its job comes)."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False

    def retire(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.give(None)
        for worker in idle:
            worker.thread.join()

    def forget(self) -> None:
        """In a forked child: the parent's workers are not there (nor may its lock be free)."""
        self._lock = threading.Lock()
        self._idle = []


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def start(function: Callable[[], object]) -> Job:
    """Run `function` on an idle worker, or on a new one if none is idle."""
    return _POOL.start(function)


def retire() -> None:
    """End the idle workers now (a running job's worker ends after LINGER)."""
    _POOL.retire()
