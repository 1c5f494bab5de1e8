"""A full disk (ENOSPC) or an exhausted quota (EDQUOT) while we write: one StoreError that
names what was being written and where, never a traceback. What had been written is
already removed by the writers' own cleanup (temp files and dirs), so the store stays as
it was before the write."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from builder.errors import StoreError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def no_space_message(err: OSError, what: str, where: Path | str | None) -> str:
    reason = "disk quota exceeded" if err.errno == errno.EDQUOT else "no space left on device"
    return f"{reason} while writing {what}" + (f" in {where}" if where is not None else "")


@contextlib.contextmanager
def writing(what: str, where: Path | str | None = None) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside into a StoreError about writing `what` (in the
    store or directory `where`, when that says more than `what` does)."""
    try:
        yield
    except OSError as err:
        if err.errno in NO_SPACE:
            raise StoreError(no_space_message(err, what, where)) from None
        raise
