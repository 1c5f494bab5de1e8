"""Crash-safe file writes: temp file in the same filesystem, fsync, rename, fsync the dir."""

from __future__ import annotations

import os
from pathlib import Path

from builder.store.scratch import owner_tag
from builder.store.space import writing


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: Path) -> None:
    """Write back everything dirty on the file system holding `path` (syncfs(2), which
    os does not wrap): one journal commit for a whole tree of new files, where an fsync
    each would pay one per file."""
    import ctypes  # here: only a build that made a layer needs it, on the finisher thread

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.syncfs(ctypes.c_int(fd)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, tmp_dir: Path, mode: int = 0o644) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old or the new, never half."""
    with writing(str(path)):
        _write_atomic(path, data, tmp_dir, mode)


def _write_atomic(path: Path, data: bytes, tmp_dir: Path, mode: int) -> None:
    import tempfile  # here: a command that writes nothing does not pay for its import

    # Named with our pid and start time, so a sweep removes it if we are killed here.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-{owner_tag()}-", dir=tmp_dir)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
