"""The mount points every sandbox needs, made once, as the lowest lower dir of its overlay.

A base such as busybox has no /sys, /etc/hosts or /etc/resolv.conf. Made per run in the
upper dir (inroot.ensure) and removed after it, they cost 3.5-7 ms a RUN on this machine's
ext4 (a dir or file made and removed, and /etc copied up for its files). docker's `-init`
layer is the same idea, but it sits above the image, so it is made per container from the
image's dirs. Ours sits below every layer and needs nothing of the image: overlayfs merges
a dir the image has with ours (the image's owner, mode and times show, as today), and a
whiteout, an opaque dir or a non-dir above hides ours, in which case the sandbox makes the
stub per run as before (inroot.ensure finds the path missing). One skeleton serves every
image; the store keeps it (StorePaths.skeleton) on the layers' file system: a lower on
another one (a tmpfs) would give the container's files another st_dev (`du -x`, `find
-xdev` would skip them).

Only the dirs /proc, /sys, /dev and /etc can reach a step's upper dir from here: the rest
are mount points, which the process can neither change nor remove.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

# Changing what a skeleton holds changes its name: a store's older one is never reused.
VERSION = "v1"
DIRS = ("proc", "sys", "dev", "etc")
FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def ensure(where: Path) -> str:
    """The skeleton dir under `where` (made on first use, whole or not at all)."""
    final = os.path.join(where, VERSION)
    if os.path.isdir(final):
        return final
    os.makedirs(where, 0o755, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".new-", dir=where)
    try:
        os.chmod(tmp, 0o755)
        # Explicit modes, whatever the umask: what a stub made per run had under docker's.
        for name in DIRS:
            os.mkdir(os.path.join(tmp, name))
            os.chmod(os.path.join(tmp, name), 0o755)
        for name in FILES:
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.fchmod(fd, 0o644)
            os.close(fd)
        try:
            os.rename(tmp, final)
        except OSError:  # another run made it first (ENOTEMPTY/EEXIST): theirs serves
            if not os.path.isdir(final):
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return final
