"""Removing store entries and counting the bytes that frees (what `builder prune` reports).

Both walk with layer/tree: a layer a RUN made may be thousands of directories deep."""

from __future__ import annotations

from pathlib import Path

from builder.layer.tree import remove_tree, tree_size


def remove(path: Path) -> int:
    """Remove a file or a tree; returns its size (0 if it was not there)."""
    size = tree_size(path)
    remove_tree(path, ignore_errors=True)
    return size


def remove_children(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(remove(child) for child in directory.iterdir())
