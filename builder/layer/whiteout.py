"""Whiteouts, the one place that knows both forms.

overlayfs (what an upper dir holds, and what unpacked layers hold so they can be lowerdirs):
  - a deleted entry is a char device 0/0 (or, since Linux 6.7, a regular file carrying the
    `overlay.whiteout` xattr);
  - an opaque dir carries the xattr `trusted.overlay.opaque` = "y" (`user.overlay.opaque`
    on userxattr mounts).
OCI (what a layer tar holds):
  - a deleted entry `name` is an empty file `.wh.name` beside it;
  - an opaque dir holds an empty file `.wh..wh..opq`.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# In a user namespace (rootless builder) the kernel allows no trusted.* xattrs: overlay is
# mounted with `userxattr` there and reads this one instead.
USER_OPAQUE_XATTR = "user.overlay.opaque"
_OVERLAY_NAMESPACES = ("trusted.overlay.", "user.overlay.")
# overlayfs features whose meaning a tar layer cannot carry: a renamed dir (redirect) and a
# metadata-only copy-up (metacopy). Sandboxes must mount with redirect_dir=off,metacopy=off.
_UNREPRESENTABLE = ("redirect", "metacopy")


def is_overlay_xattr(name: str) -> bool:
    """An overlayfs-private xattr: never written into a layer tar."""
    return name.startswith(_OVERLAY_NAMESPACES)


def is_overlay_whiteout(st: os.stat_result, xattrs: dict[str, bytes] | None = None) -> bool:
    """Is this upper-dir entry a whiteout (a deleted lower entry)?"""
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    if xattrs and stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return any(xattrs.get(ns + "whiteout") is not None for ns in _OVERLAY_NAMESPACES)
    return False


def is_overlay_opaque(xattrs: dict[str, bytes]) -> bool:
    return any(xattrs.get(ns + "opaque") == b"y" for ns in _OVERLAY_NAMESPACES)


def unrepresentable(xattrs: dict[str, bytes]) -> str | None:
    """The name of an overlay feature in use that a tar layer cannot express, if any."""
    for ns in _OVERLAY_NAMESPACES:
        for feature in _UNREPRESENTABLE:
            if ns + feature in xattrs:
                return feature
    return None


def oci_whiteout_target(name: str) -> str | None:
    """For a base name `.wh.x`, the deleted entry `x`; None if not a (plain) whiteout."""
    if name.startswith(WHITEOUT_PREFIX) and name != OPAQUE_MARKER:
        return name[len(WHITEOUT_PREFIX) :]
    return None


def is_oci_opaque(name: str) -> bool:
    return name == OPAQUE_MARKER


def make_overlay_whiteout(name: str, dir_fd: int) -> None:
    """Create the overlayfs whiteout for `name` in the directory `dir_fd`."""
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)


def make_overlay_opaque(dir_fd: int) -> None:
    name = OPAQUE_XATTR if _in_initial_user_namespace() else USER_OPAQUE_XATTR
    os.setxattr(dir_fd, name, b"y")


def write_whiteout(path: Path) -> None:
    """The overlayfs whiteout at `path` in an upper dir we write ourselves (the copying and
    fuse-overlayfs snapshotters'): a char 0/0; where the store's file system refuses one
    (an overlayfs), the other form the writer reads, an empty file with the `whiteout`
    xattr."""
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        make_overlay_whiteout(path.name, dir_fd)
    except PermissionError:
        path.write_bytes(b"")
        os.setxattr(path, _OVERLAY_NAMESPACES[1] + "whiteout", b"y")
    finally:
        os.close(dir_fd)


def write_opaque(path: Path) -> None:
    """Mark the dir `path` opaque; where trusted.* is refused (an overlayfs again), with
    the user.* name."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        make_overlay_opaque(fd)
    except PermissionError:
        os.setxattr(fd, USER_OPAQUE_XATTR, b"y")
    finally:
        os.close(fd)


@functools.cache
def _in_initial_user_namespace() -> bool:
    """Read once per process, not once per opaque dir: a rootless builder enters its user
    namespace when it opens its store, before any layer is unpacked, and never leaves it."""
    with open("/proc/self/uid_map", encoding="ascii") as f:
        return f.read().split() == ["0", "0", "4294967295"]
