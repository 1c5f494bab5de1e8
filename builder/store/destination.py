"""Where an export goes: a file written whole or not at all, or a directory put in place whole.

Every output file (an archive, a rootfs tar, a metadata file) goes through `output_file`: a
temp file in the same directory, fsync, rename, so a reader (or a crash) sees the old file or
the new one, never half of one. A symlink is followed (its target is replaced); a character
device or a FIFO (`/dev/null`, a named pipe) is written in place, as renaming over it would
replace it. stdout is not a path: the CLI passes its stream to the writers itself.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from builder.errors import UsageError
from builder.layer.tree import remove_tree
from builder.store.atomic import fsync_dir
from builder.store.space import writing


def _parent_of(path: Path) -> Path:
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: the directory {parent} does not exist")
    return parent


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[BinaryIO]:
    """A stream whose bytes become `path` when the block ends without an error."""
    path = Path(os.path.realpath(path))  # a symlink: write its target, as `>` would
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror}") from None
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        with writing(str(path)), open(path, "wb") as device:
            yield device
        return
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory, not a file")
    parent = _parent_of(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=parent)
    try:
        with writing(str(path)), os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.rename(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(parent)


@contextlib.contextmanager
def output_dir(path: Path) -> Iterator[Path]:
    """A new directory to fill; it becomes `path` when the block ends without an error.

    `path` must not exist, or be an empty directory (it is then replaced): merging into a
    tree that holds other files would leave a root filesystem that is no image's.
    """
    path = Path(os.path.realpath(path))
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{path} exists and is not a directory")
        if any(path.iterdir()):
            raise UsageError(f"{path} is not empty: give a new or an empty directory")
    parent = _parent_of(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=parent))
    try:
        with writing(str(path)):
            yield tmp
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, path)  # replaces an empty dir atomically; fails on a non-empty one
        except OSError as err:
            raise UsageError(f"cannot put {path} in place: {err.strerror}") from None
    except BaseException:
        remove_tree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)
