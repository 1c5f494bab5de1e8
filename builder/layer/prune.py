"""Drop directories that overlayfs copied up but nothing changed.

A process (or the sandbox's mount-point stubs, such as /etc/hosts on an image without one)
can make overlayfs copy a lower directory up and then leave it as it was: empty in the
upper dir, with the lower's owner, mode, times and xattrs. Such a directory carries no
change, and BuildKit's layers do not hold it; removing it keeps `RUN true` an empty layer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from builder.layer.tree import DirCursor, Visit, open_dir, walk
from builder.layer.whiteout import is_overlay_opaque, is_overlay_xattr, unrepresentable
from builder.layer.xattrs import read_xattrs


def _same_dir(upper: os.stat_result, upper_x: dict[str, bytes], lower_fd: int) -> bool:
    b = os.fstat(lower_fd)
    if not stat.S_ISDIR(b.st_mode):
        return False
    if (upper.st_mode, upper.st_uid, upper.st_gid, upper.st_mtime_ns) != (
        b.st_mode,
        b.st_uid,
        b.st_gid,
        b.st_mtime_ns,
    ):
        return False
    if is_overlay_opaque(upper_x) or unrepresentable(upper_x):
        return False  # an opaque (or renamed) dir hides the lower: a real change
    # overlayfs's own bookkeeping (origin, impure, ...) says nothing about the content.
    lower_x = read_xattrs(f"/proc/self/fd/{lower_fd}")
    return _content_xattrs(upper_x) == _content_xattrs(lower_x)


def _content_xattrs(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    return {n: v for n, v in xattrs.items() if not is_overlay_xattr(n)}


class _Lowers:
    """What the merged view shows below the upper dir, looked up in the lowers top-first;
    a cursor per lower consulted, so that the lookups of a post-order walk (each dir right
    after its children) cost a step each, not a walk from the top (tree.DirCursor)."""

    def __init__(self, lowers_top_first: Sequence[Path]) -> None:
        self._paths = lowers_top_first
        self._cursors: dict[int, DirCursor | None] = {}  # by index; None: no such dir

    def dir_fd(self, rel: bytes) -> int | None:
        """An fd (the cursor's: not to be closed) of `rel` if the merged view shows a
        directory there, reached one component at a time (`rel` may be longer than
        PATH_MAX); None when it shows none, or a non-dir (or a symlink) that hides the
        rest: not a copied-up dir."""
        parts = tuple(p for p in rel.split(b"/") if p and p != b".")
        for index in range(len(self._paths)):
            cursor = self._cursor(index)
            if cursor is None:
                continue
            try:
                return cursor.goto(parts)
            except FileNotFoundError:
                continue
            except OSError:
                return None
        return None

    def _cursor(self, index: int) -> DirCursor | None:
        if index not in self._cursors:
            try:
                self._cursors[index] = DirCursor(open_dir(self._paths[index]))
            except OSError:
                self._cursors[index] = None
        return self._cursors[index]

    def close(self) -> None:
        for cursor in self._cursors.values():
            if cursor is not None:
                cursor.close()
                os.close(cursor.base)
        self._cursors.clear()


def prune_unchanged_dirs(upper: Path, lowers: Sequence[Path]) -> int:
    """Remove empty upper dirs identical to what the lowers show; returns how many.

    `lowers` are bottom-first, as OverlayRoot has them. Only the upper dir is walked, so the
    cost follows the size of the change, not of the image.
    """
    seen = _Lowers(list(reversed(lowers)))
    try:
        return _prune(upper, seen)
    finally:
        seen.close()


def _prune(upper: Path, lowers: _Lowers) -> int:
    removed = 0
    # Bottom-up: a dir is empty when every entry it held was a dir removed here.
    # left[d]: how many entries the dir whose children are at depth d still holds.
    left: list[int] = [0]
    for visit in walk(upper, post_order=True):
        d = visit.depth
        if not visit.after:
            left[d] += 1
            if visit.is_dir:
                del left[d + 1 :]
                left.append(0)
            continue
        empty = len(left) > d + 1 and left[d + 1] == 0
        del left[d + 1 :]
        if empty and _unchanged(visit, lowers):
            os.rmdir(visit.name, dir_fd=visit.dir_fd)
            removed += 1
            left[d] -= 1
    return removed


def _unchanged(visit: Visit, lowers: _Lowers) -> bool:
    lower = lowers.dir_fd(visit.path)
    return lower is not None and _same_dir(visit.st, read_xattrs(visit.proc_path), lower)
