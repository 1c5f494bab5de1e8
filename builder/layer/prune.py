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

from builder.layer.whiteout import is_overlay_opaque, is_overlay_xattr, unrepresentable
from builder.layer.xattrs import read_xattrs


def _same_dir(upper: str, lower: str) -> bool:
    try:
        a, b = os.lstat(upper), os.lstat(lower)
    except FileNotFoundError:
        return False
    if not (stat.S_ISDIR(a.st_mode) and stat.S_ISDIR(b.st_mode)):
        return False
    if (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) != (
        b.st_mode,
        b.st_uid,
        b.st_gid,
        b.st_mtime_ns,
    ):
        return False
    upper_x = read_xattrs(upper)
    if is_overlay_opaque(upper_x) or unrepresentable(upper_x):
        return False  # an opaque (or renamed) dir hides the lower: a real change
    # overlayfs's own bookkeeping (origin, impure, ...) says nothing about the content.
    return _content_xattrs(upper_x) == _content_xattrs(read_xattrs(lower))


def _content_xattrs(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    return {n: v for n, v in xattrs.items() if not is_overlay_xattr(n)}


def _lower_entry(rel: str, lowers_top_first: Sequence[Path]) -> str | None:
    """The path that the merged view shows for `rel` below the upper dir, if any."""
    for lower in lowers_top_first:
        candidate = os.path.join(lower, rel)
        if os.path.lexists(candidate):
            return candidate
    return None


def prune_unchanged_dirs(upper: Path, lowers: Sequence[Path]) -> int:
    """Remove empty upper dirs identical to what the lowers show; returns how many.

    `lowers` are bottom-first, as OverlayRoot has them. Only the upper dir is walked, so the
    cost follows the size of the change, not of the image.
    """
    top_first = list(reversed(lowers))
    removed: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(upper, topdown=False):
        # Bottom-up: a dir is empty when it has no files and every subdir was removed.
        if dirpath == str(upper) or filenames:
            continue
        if any(os.path.join(dirpath, d) not in removed for d in dirnames):
            continue
        lower = _lower_entry(os.path.relpath(dirpath, upper), top_first)
        if lower is not None and _same_dir(dirpath, lower):
            os.rmdir(dirpath)
            removed.add(dirpath)
    return len(removed)
