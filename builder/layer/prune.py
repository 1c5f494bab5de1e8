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

from builder.layer.tree import Visit, open_below, open_dir, walk
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


def _lower_dir(rel: bytes, lowers_top_first: Sequence[Path]) -> int | None:
    """An fd of what the merged view shows for `rel` below the upper dir, if that is a
    directory (reached one component at a time: `rel` may be longer than PATH_MAX)."""
    for lower in lowers_top_first:
        try:
            root = open_dir(lower)
        except OSError:
            continue
        try:
            return open_below(root, rel)
        except FileNotFoundError:
            continue
        except OSError:
            return None  # a non-dir (or a symlink) hides the rest: not a copied-up dir
        finally:
            os.close(root)
    return None


def prune_unchanged_dirs(upper: Path, lowers: Sequence[Path]) -> int:
    """Remove empty upper dirs identical to what the lowers show; returns how many.

    `lowers` are bottom-first, as OverlayRoot has them. Only the upper dir is walked, so the
    cost follows the size of the change, not of the image.
    """
    top_first = list(reversed(lowers))
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
        if empty and _unchanged(visit, top_first):
            os.rmdir(visit.name, dir_fd=visit.dir_fd)
            removed += 1
            left[d] -= 1
    return removed


def _unchanged(visit: Visit, lowers_top_first: Sequence[Path]) -> bool:
    lower = _lower_dir(visit.path, lowers_top_first)
    if lower is None:
        return False
    try:
        return _same_dir(visit.st, read_xattrs(visit.proc_path), lower)
    finally:
        os.close(lower)
