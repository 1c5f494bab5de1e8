"""Stopping a build whose stages run at once: when one fails (or the build is interrupted),
the others' RUN processes are killed and no new step starts.

A RUN's sandbox tells its caller pid 1's host pid once it is set up (sandbox.run's
`started`). The stopper holds a pidfd of each live one, so a kill can never reach a process
that took a reused pid. SIGKILL to pid 1 ends its whole pid namespace; the supervisor then
removes the mounts and the cgroup as after any run, and the step fails (its error is not
the build's: the first failure is). An in-root writer (COPY, WORKDIR) is not killed: it is
our own bounded work, and the stage stops at its next step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator


class StageStopped(Exception):  # internal: a stage that stopped because another failed
    """Raised at the start of a step once the build is stopping."""


def _kill(pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has already ended
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


class Stopper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[int] = set()  # pidfds of the RUN processes now running
        self._stopped = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def check(self) -> None:
        """StageStopped if the build is stopping: a step about to start does not."""
        if self._stopped.is_set():
            raise StageStopped("the build is stopping")

    @contextlib.contextmanager
    def watching(self) -> Iterator[Callable[[int], None]]:
        """A `started` callback for one sandbox run; its pid 1 is killable while inside."""
        mine: list[int] = []

        def started(pid: int) -> None:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:  # it has already ended (or a kernel before 5.3: it is not killed)
                return
            with self._lock:
                mine.append(pidfd)
                self._live.add(pidfd)
                if self._stopped.is_set():  # stopped while it was being set up
                    _kill(pidfd)

        try:
            yield started
        finally:
            with self._lock:
                for pidfd in mine:
                    self._live.discard(pidfd)
                    os.close(pidfd)

    def stop(self) -> None:
        """No step starts from now on; every live RUN process is killed."""
        with self._lock:
            self._stopped.set()
            for pidfd in self._live:
                _kill(pidfd)
