"""Hostile trees made by the tests themselves: a directory chain deeper than Python's stack
and whose paths exceed PATH_MAX (so it is made and read through dir fds, never by path)."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path

DEPTH = 2500  # levels: past the recursion limit (1000), and 2 * 2500 bytes > PATH_MAX (4096)
LEAF = b"at the bottom\n"
MTIME = 1_600_000_000
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def make_deep(top: Path, depth: int = DEPTH, *, leaf: bytes | None = LEAF) -> Path:
    """top/d/d/.../d (`depth` dirs named d), a file `leaf` in the last; every dir's mtime
    set to MTIME afterwards (two trees made so are identical to prune's eyes)."""
    top.mkdir(parents=True, exist_ok=True)
    fd = os.open(top, _DIR)
    try:
        for _ in range(depth):
            os.mkdir("d", 0o755, dir_fd=fd)
            nxt = os.open("d", _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if leaf is not None:
            out = os.open("leaf", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
            os.write(out, leaf)
            os.utime(out, (MTIME, MTIME))
            os.close(out)
    finally:
        os.close(fd)
    for dir_fd in descend(top, depth):
        os.utime(dir_fd, (MTIME, MTIME))
    return top


def descend(top: Path, depth: int) -> Iterator[int]:
    """An fd of each dir of the chain below top, top first (each closed after its turn)."""
    fd = os.open(top / "d", _DIR)
    try:
        for level in range(depth):
            yield fd
            if level + 1 < depth:
                nxt = os.open("d", _DIR, dir_fd=fd)
                os.close(fd)
                fd = nxt
    finally:
        os.close(fd)


def chain_depth(top: Path) -> tuple[int, bytes | None]:
    """How many `d` dirs are chained below top, and the bottom's `leaf` content (if any)."""
    depth = 0
    fd = os.open(top, _DIR)
    try:
        while True:
            try:
                nxt = os.open("d", _DIR, dir_fd=fd)
            except FileNotFoundError:
                break
            os.close(fd)
            fd = nxt
            depth += 1
        try:
            leaf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        except FileNotFoundError:
            return depth, None
        with os.fdopen(leaf, "rb") as f:
            return depth, f.read()
    finally:
        os.close(fd)


def deep_name(depth: int = DEPTH, leaf: str = "leaf") -> str:
    return "d/" * depth + leaf


@contextlib.contextmanager
def few_fds(limit: int = 256) -> Iterator[None]:
    """Lower the soft limit of open files: a walk that holds one fd per level fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
