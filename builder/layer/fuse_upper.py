"""A fuse-overlayfs upper dir turned into overlayfs's form, so that the one layer writer
makes the same bytes from it as from the kernel's overlay.

fuse-overlayfs 1.10 (sandbox/fuse.py) differs in three ways:
  - an opaque dir holds a `.wh..wh..opq` file and a `.wh..opq` whiteout beside it (and, as
    root, carries `trusted.overlay.opaque`; unprivileged, `user.fuseoverlayfs.opaque`);
  - where it may not make a char 0/0 (no CAP_MKNOD), a removed entry `x` is a file `.wh.x`;
  - it keeps private xattrs (`user.fuseoverlayfs.*`, `security.fuseoverlayfs.*`), which the
    writer would otherwise put in the layer as the file's own.
Each becomes what overlayfs writes: the opaque xattr, a char 0/0 (or its xattr form, see
whiteout.write_whiteout), no private xattrs. A dir whose entries change keeps its times:
its mtime is the RUN's, and goes into the layer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from builder.layer import whiteout as wh
from builder.layer.xattrs import read_xattrs, xattr_names

_PRIVATE = ("user.fuseoverlayfs.", "security.fuseoverlayfs.")
_OPAQUE_XATTR = "user.fuseoverlayfs.opaque"
_OPAQUE_WHITEOUT = ".wh..opq"  # what it puts beside `.wh..wh..opq`


def normalize(upper: Path, lowers: Sequence[Path]) -> None:
    """Rewrite `upper`, as fuse-overlayfs left it over `lowers` (bottom-first), into
    overlayfs's form, in place."""
    stack = [(upper, list(reversed(lowers)), True)]
    while stack:
        directory, below, met = stack.pop()
        if _normalize_dir(directory, met, below):
            below = []  # below an opaque dir the kernel looks no further down
        with os.scandir(directory) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    found, _, layers = _look_up(below, entry.name)
                    stack.append((Path(entry.path), layers, found))
                else:
                    _drop_private(entry.path)


def _look_up(layers: list[Path], name: str) -> tuple[bool, bool, list[Path]]:
    """The kernel's lookup of `name` in the lower `layers` (top-most first, each the dir
    that holds `name`): whether it meets an entry or a whiteout, whether what it meets
    first is an entry, and the layers in which `name` is a dir it would look into further
    (down to an opaque one).

    fuse-overlayfs marks every dir it makes opaque, and may leave a whiteout for a name it
    made and removed; overlayfs marks only a dir made where its lookup met something
    (`ovl_create_over_whiteout`), and whites out only a name a lower layer shows
    (`ovl_lower_positive`)."""
    met = positive = False
    dirs: list[Path] = []
    for layer in layers:
        path = layer / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        xattrs = read_xattrs(str(path))
        if not met:
            positive = not wh.is_overlay_whiteout(st, xattrs)
        met = True
        if not stat.S_ISDIR(st.st_mode):  # a whiteout or a file hides the layers below
            break
        dirs.append(path)
        if wh.is_overlay_opaque(xattrs):
            break
    return met, positive, dirs


def _normalize_dir(directory: Path, met: bool, below: list[Path]) -> bool:
    """Put one dir and its entries in overlayfs's form; whether it is opaque. `met`: the
    lookup of its name met something below (else overlayfs would not mark it opaque);
    `below`: the lower dirs its lookups go on into."""
    st = os.lstat(directory)
    names = set(os.listdir(directory))
    opaque = _drop_private(str(directory))
    touched = False
    if wh.OPAQUE_MARKER in names:
        opaque = True
        for name in (wh.OPAQUE_MARKER, _OPAQUE_WHITEOUT):
            if name in names:
                os.unlink(directory / name)
                names.discard(name)
        touched = True
    xattrs = xattr_names(str(directory)) or []
    marked = [n for n in (wh.OPAQUE_XATTR, wh.USER_OPAQUE_XATTR) if n in xattrs]
    opaque = met and (opaque or bool(marked))
    if not opaque:
        for name in marked:
            os.removexattr(directory, name)
    elif not marked:
        wh.write_opaque(directory)
    layers = [] if opaque else below
    for name in sorted(names):
        path = directory / name
        entry = os.lstat(path)
        target = wh.oci_whiteout_target(name)
        if target is not None and not stat.S_ISDIR(entry.st_mode):
            os.unlink(path)  # its other form; never beside the name it whites out
            if _look_up(layers, target)[1] and target not in names:
                wh.write_whiteout(directory / target)
            touched = True
        elif (
            wh.is_overlay_whiteout(entry, read_xattrs(str(path)))
            and not (
                _look_up(layers, name)[1]  # something below for it to hide
            )
        ):
            os.unlink(path)
            touched = True
    if touched:
        os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return opaque


def _drop_private(path: str) -> bool:
    """Remove fuse-overlayfs's own xattrs from `path`; whether it marked it opaque."""
    opaque = False
    for name in xattr_names(path) or []:
        if not name.startswith(_PRIVATE):
            continue
        if name == _OPAQUE_XATTR:
            with contextlib.suppress(OSError):
                opaque = os.getxattr(path, name, follow_symlinks=False) == b"y"
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError as err:
            if err.errno != errno.ENODATA:
                raise
    return opaque
