"""Reading a file's extended attributes, the one way both layer writing and pruning do it."""

from __future__ import annotations

import errno
import os


def read_xattrs(path: str | bytes) -> dict[str, bytes]:
    """Every xattr of `path` itself (a symlink's own, never its target's).

    A file system without xattrs (or one that refuses to list them) has none; an xattr
    removed between the list and the read is skipped; any other failure is raised, since
    a layer written without an xattr it should hold would be silently wrong.
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as err:
            if err.errno != errno.ENODATA:
                raise
    return out
