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
from pathlib import Path

from builder.sandbox import inroot

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
    # (os only: `run` imports neither tempfile nor shutil, tests/e2e/test_startup_imports.)
    tmp = os.path.join(where, f".new-{os.getpid()}-{os.urandom(6).hex()}")
    os.mkdir(tmp, 0o700)
    try:
        os.chmod(tmp, 0o755)
        # Explicit modes, whatever the umask: a stub's under docker's umask.
        for name in DIRS:
            os.mkdir(os.path.join(tmp, name), 0o700)
            os.chmod(os.path.join(tmp, name), 0o755)
        for name in FILES:
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.fchmod(fd, 0o644)
            os.close(fd)
        os.rename(tmp, final)
    except OSError:
        _remove(tmp)
        if not os.path.isdir(final):  # (else another run made it first: theirs serves)
            raise
    return final


def _remove(tmp: str) -> None:
    for name in (*reversed(FILES), *reversed(DIRS)):
        with contextlib.suppress(OSError):
            (os.unlink if name in FILES else os.rmdir)(os.path.join(tmp, name))
    with contextlib.suppress(OSError):
        os.rmdir(tmp)


class Shown:
    """Which mount points the skeleton shows in a mounted root, told by inode (one file
    system: an entry with the skeleton's inode number is the skeleton's), and what the
    stubs it spares would have left to undo (inroot.Stubs' `shown` and `emptied`). Made
    before any stub is: it keeps the image's times of the dirs a stub would go in."""

    def __init__(self, rootfd: int, where: Path, upper: Path) -> None:
        base = os.path.join(where, VERSION)
        self._upper = upper
        self._shown: dict[str, os.stat_result] = {}
        self._inos: dict[str, int] = {}
        for name in (*DIRS, *FILES):
            with contextlib.suppress(OSError):
                self._inos[name] = os.lstat(os.path.join(base, name)).st_ino
        self._parents: dict[str, os.stat_result] = {}
        for parent in (".", "etc"):
            with contextlib.suppress(OSError):
                fd = inroot.open_path(rootfd, parent)
                try:
                    self._parents[parent] = os.fstat(fd)
                finally:
                    os.close(fd)
        self._ours = {
            name
            for name, st in self._parents.items()
            if name != "." and st.st_ino == self._inos.get(name)
        }

    def note(self, path: str, fd: int) -> None:
        """`path` (a mount point, opened as `fd`) was there: the skeleton's, or the image's."""
        name = path.strip("/")
        if name not in self._inos or os.fstat(fd).st_ino != self._inos[name]:
            return
        if name in DIRS:
            self._ours.add(name)
        parent = os.path.dirname(name) or "."
        if parent in self._parents and parent not in self._ours:
            self._shown.setdefault(parent, self._parents[parent])

    def stubs(self) -> inroot.Stubs:
        return inroot.Stubs(
            shown=tuple((p, st.st_atime_ns, st.st_mtime_ns) for p, st in self._shown.items()),
            emptied=tuple(f"{self._upper}/{name}" for name in DIRS if name in self._ours),
        )
