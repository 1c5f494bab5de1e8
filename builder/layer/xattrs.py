"""Reading a file's extended attributes, the one way both layer writing and pruning do it."""

from __future__ import annotations

import errno
import os


def xattr_names(target: str | bytes | int) -> list[str] | None:
    """The names of the xattrs of `target` itself (a path, whose last component is not
    followed, or an open fd): None when its file system cannot hold any (so no other file
    of it needs asking), [] when it has none or refuses to list them. Any other failure is
    raised."""
    try:
        if isinstance(target, int):
            return os.listxattr(target)
        return os.listxattr(target, follow_symlinks=False)
    except OSError as err:
        if err.errno == errno.ENOTSUP:
            return None
        if err.errno == errno.EPERM:
            return []
        raise


def read_named(target: str | bytes | int, names: list[str]) -> dict[str, bytes]:
    """The values of `names` on `target` (as for xattr_names); one removed since it was
    listed is skipped."""
    out: dict[str, bytes] = {}
    for name in names:
        try:
            if isinstance(target, int):
                out[name] = os.getxattr(target, name)
            else:
                out[name] = os.getxattr(target, name, follow_symlinks=False)
        except OSError as err:
            if err.errno != errno.ENODATA:
                raise
    return out


def read_xattrs(target: str | bytes | int) -> dict[str, bytes]:
    """Every xattr of `target` itself (a symlink's own, never its target's; or an open fd's).

    A file system without xattrs (or one that refuses to list them) has none; an xattr
    removed between the list and the read is skipped; any other failure is raised, since
    a layer written without an xattr it should hold would be silently wrong.
    """
    names = xattr_names(target)
    return read_named(target, names) if names else {}
