"""Finisher: what a build finishes behind its critical path, in order, on one thread.

A layer's image ID needs its diff ID alone, and its blob's digest is known once the last
compressed byte is hashed and in the file (blobs.BlobWriter.seal); what remains is making
it durable (an fsync: its bytes went by direct I/O, but its tail, its size and the file's
metadata wait for it) and renaming it in, then the records that name it (its variant, its
frame index, the step's cache record, the COPY lineage).
Those run here, in submission order, while the next steps run; `wait()` is called before
anything reads them as a whole (the manifest and index, a cache export, a compression
conversion). Order is the consistency rule: a record is written only after the blob it
names is durable and in place, so a crash or a failure at any point leaves a store that
names nothing missing (the temp blob is removed; records not yet written are misses).

After a failure the remaining jobs are skipped (a record could name the blob that failed)
and `wait()` raises it: the build fails with that error. The thread is not a daemon, so a
build that fails for another reason still finishes (or cleans up) what it started before
the process exits.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import queue

Job = Callable[[], object]
Cleanup = Callable[[], object]


class Finisher:
    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Job, Cleanup | None] | None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def submit(self, job: Job, cleanup: Cleanup | None = None) -> None:
        """Run `job` after every job submitted before it; `cleanup` instead when an
        earlier one failed (and after `job` itself fails)."""
        with self._lock:
            if self._jobs is None:
                import queue  # here: a command that writes no layer does not import it

                self._jobs = queue.Queue()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._jobs,), name="finisher"
                )
                self._thread.start()
            self._jobs.put((job, cleanup))

    def _run(self, jobs: queue.Queue[tuple[Job, Cleanup | None] | None]) -> None:
        while (item := jobs.get()) is not None:
            job, cleanup = item
            try:
                if self._error is None:
                    job()
                    continue
            except BaseException as err:  # kept for wait(), raised in the build's thread
                self._error = err
            if cleanup is not None:
                with contextlib.suppress(Exception):  # the first error is the one told
                    cleanup()

    def settle(self) -> None:
        """wait(), keeping no failure: for a build that has failed already (its own error
        is the one told), or whose failure was told by wait()."""
        with contextlib.suppress(Exception):
            self.wait()

    def wait(self) -> None:
        """Return once every job submitted is done; raise the first failure, once."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._jobs is not None:
                self._jobs.put(None)
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error
