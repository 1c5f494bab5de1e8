"""Reading a recipe file: a regular file of at most MAX_RECIPE_BYTES, never more in memory.

`build` and `lint`/`parse` read their recipe here, so both refuse the same files with the
same message: a device (`-f /dev/zero` once grew until the OOM killer stopped it), a FIFO,
a directory, or a file over the limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from builder.errors import UsageError
from builder.recipe.source import MAX_RECIPE_BYTES, recipe_text, too_large

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def read_recipe_bytes(path: Path, missing_hint: str | None = None) -> bytes:
    """The bytes of the recipe at `path`; UsageError when it is missing or not a regular
    file, RecipeError when it is over the limit (decided before reading it all)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse it below anyway.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        hint = f" ({missing_hint})" if missing_hint else ""
        raise UsageError(f"no recipe at {path}{hint}") from None
    except OSError as err:
        raise UsageError(f"cannot read the recipe {path}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise UsageError(f"{path} is {kind}, not a recipe (a recipe is a regular file)")
        if info.st_size > MAX_RECIPE_BYTES:
            raise too_large(path.name, info.st_size)
        # st_size can lie (a file in /proc says 0, a file can grow): read one byte past
        # the limit at most, and let the size check see it.
        chunks: list[bytes] = []
        left = MAX_RECIPE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise UsageError(f"{path} is a directory, not a recipe") from None
        raise UsageError(f"cannot read the recipe {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_recipe_text(path: Path, missing_hint: str | None = None) -> str:
    """The recipe at `path` as text: read_recipe_bytes, then source.recipe_text's checks."""
    return recipe_text(read_recipe_bytes(path, missing_hint), path.name)
