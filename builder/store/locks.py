"""The store's two flocks: one for updates (index.json, layer renames), one for gc leases."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from builder.errors import StoreError


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class UpdateLock:
    """Exclusive flock on root/lock; re-entrant within this object (one per Store), so a
    part that takes it may call another part that takes it too."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd = -1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._mutex:
            if self._depth == 0:
                fd = _open(self._path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    os.close(self._fd)  # closing releases the flock
                    self._fd = -1


class GcLock:
    """root/gc.lock: builds and runs hold it shared (a lease), gc holds it exclusive, so
    blobs written but not yet tagged, and layers under a running container, stay."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        fd = _open(self._path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """For gc: StoreError at once (no waiting) if any lease is held."""
        fd = _open(self._path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise StoreError("a build is using the store; run gc when it ends") from None
                raise
            yield
        finally:
            os.close(fd)
