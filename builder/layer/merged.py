"""Whether the overlay of some layer dirs shows a directory at a path, read on the host.

WORKDIR asks only this. Its directory is most often there already (a RUN made it, or the
base has it), and then the step changes nothing: mounting an overlay and starting a
sandbox to find that out costs tens of ms. The answer here is `True` only when it is
certain: each component is a real directory in the topmost layer that has it, merged with
the layers below as overlayfs merges them (down to an opaque dir, never past a whiteout or
a non-dir). Anything that needs overlayfs itself (a symlink on the way, which the sandbox
resolves inside the image; a redirect) is `False`, and the caller asks the sandbox.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from builder.layer.whiteout import is_overlay_opaque, unrepresentable
from builder.layer.xattrs import read_xattrs


def is_dir_in(lowers: Sequence[Path], path: str) -> bool:
    """Does the overlay of `lowers` (bottom-first, as OverlayRoot has them) show a directory
    at the absolute `path`, reached through directories only? `False` also when unsure."""
    layers = [os.fsencode(lower) for lower in reversed(lowers)]  # top first
    rel = b""
    try:
        for name in os.fsencode(path).split(b"/"):
            if name in (b"", b"."):
                continue
            if name == b"..":  # (normalized away by WORKDIR; left to the sandbox)
                return False
            rel += b"/" + name
            layers = _merged(layers, rel)
            if not layers:
                return False
    except OSError:  # unreadable, a name too long: the sandbox will say
        return False
    return True


def _merged(layers: list[bytes], rel: bytes) -> list[bytes]:
    """The layers (top first) whose dirs at `rel` make the merged dir there; [] when the
    merged view has no plain directory at `rel`."""
    merged: list[bytes] = []
    for layer in layers:
        try:
            st = os.lstat(layer + rel)
        except (FileNotFoundError, NotADirectoryError):
            continue  # not in this layer: the next one down may have it
        if not stat.S_ISDIR(st.st_mode):
            break  # a whiteout, file or symlink: it hides the layers below (or is on top)
        xattrs = read_xattrs(layer + rel)
        if unrepresentable(xattrs):
            return []
        merged.append(layer)
        if is_overlay_opaque(xattrs):
            break  # the layers below do not show through
    return merged
