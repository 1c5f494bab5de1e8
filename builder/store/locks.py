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


def _command_of(pid: int) -> str | None:
    """`builder VERB` for a builder process (from its argv), else its program name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    for i, arg in enumerate(argv):
        # `.../bin/builder VERB ...` or `python -m builder VERB ...`; --root takes a value.
        if arg == "builder" or arg.endswith("/builder"):
            rest = argv[i + 1 :]
            while rest and rest[0].startswith("-"):
                rest = rest[2:] if rest[0] == "--root" else rest[1:]
            return f"builder {rest[0]}" if rest else "builder"
    return os.path.basename(argv[0]) if argv else None


def _holders(fd: int) -> str:
    """Who holds a flock on the file open at `fd`, as /proc/locks tells it: the lease
    holders a refused gc names, so the user knows what to wait for."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list[int] = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                    continue  # a waiter, or another kind of lock
                if fields[5] == device and fields[4].isdigit() and int(fields[4]) not in pids:
                    pids.append(int(fields[4]))
    except OSError:
        pass
    named = [f"`{cmd}` (pid {pid})" for pid in pids if (cmd := _command_of(pid)) is not None]
    if not named:
        return "a build, run, load or export"
    return ", ".join(named)


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
    def exclusive(self, verb: str = "prune") -> Iterator[None]:
        """For gc and fsck --repair: StoreError at once (no waiting) if any lease is held;
        the message says to run `builder VERB` again."""
        fd = _open(self._path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise StoreError(
                        f"the store is in use by {_holders(fd)}; run `builder {verb}` again"
                        " when it ends"
                    ) from None
                raise
            yield
        finally:
            os.close(fd)
