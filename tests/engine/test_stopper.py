"""engine/stopper with real processes: a stop kills what is being watched, and a process
that starts after the stop is killed as soon as it is seen; a step does not start."""

from __future__ import annotations

import signal
import subprocess

import pytest

from builder.engine.stopper import StageStopped, Stopper


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def test_stop_kills_the_watched_processes_only() -> None:
    stopper = Stopper()
    watched, other = sleeper(), sleeper()
    try:
        with stopper.watching() as started:
            started(watched.pid)
            stopper.check()  # not stopping yet
            stopper.stop()
            assert watched.wait(10) == -signal.SIGKILL
        assert other.poll() is None  # never handed to the stopper
    finally:
        for proc in (watched, other):
            proc.kill()
            proc.wait()


def test_a_process_seen_after_the_stop_is_killed_and_no_step_starts() -> None:
    stopper = Stopper()
    stopper.stop()
    with pytest.raises(StageStopped):
        stopper.check()
    late = sleeper()
    try:
        with stopper.watching() as started:
            started(late.pid)
            assert late.wait(10) == -signal.SIGKILL
    finally:
        late.kill()
        late.wait()


def test_an_ended_process_is_no_error() -> None:
    stopper = Stopper()
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names nothing now
    with stopper.watching() as started:
        started(gone.pid)
    stopper.stop()
