"""Removing store entries and counting the bytes that frees (what `builder prune` reports)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def tree_size(path: Path) -> int:
    total = 0
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        for dirpath, dirnames, filenames in os.walk(path):
            for name in filenames + dirnames:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    except OSError:
        pass
    return total


def remove(path: Path) -> int:
    """Remove a file or a tree; returns its size (0 if it was not there)."""
    size = tree_size(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return size


def remove_children(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(remove(child) for child in directory.iterdir())
