"""Paths inside an untrusted root, resolved the way the sandboxed process will see them.

We prepare the root from the host, so a symlink in the image (`/etc -> /host/etc`) followed
naively would send a mount or a mkdir to the host. openat2(RESOLVE_IN_ROOT) keeps every
symlink and `..` below the root; mounts then target `/proc/self/fd/N` of the opened path.

Mount points missing from the root are created ("stubs") and removed after the run so they
never reach the upper dir, i.e. the layer (BuildKit does the same); the usual ones come from
the skeleton below the overlay instead (skeleton.py), when the image does not hide it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Literal

from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC


@dataclass(frozen=True)
class Stubs:
    """What we added to a root: paths created (parents first), and dirs whose times we
    changed by creating in them (path, atime_ns, mtime_ns), to restore afterwards.

    A mount point the skeleton below the overlay shows (skeleton.py) is no stub, but the
    run must leave the layer a stub left: `shown` are the dirs a stub would have been
    made in (their times put back if the run changed them, which copied them up), and
    `emptied` the upper dir's copies of the skeleton's dirs, removed if the run left them
    empty (as a stub dir is)."""

    created: tuple[str, ...] = ()
    touched: tuple[tuple[str, int, int], ...] = ()
    shown: tuple[tuple[str, int, int], ...] = ()
    emptied: tuple[str, ...] = ()

    def __add__(self, other: Stubs) -> Stubs:
        return Stubs(
            self.created + other.created,
            self.touched + other.touched,
            self.shown + other.shown,
            self.emptied + other.emptied,
        )


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def open_path(rootfd: int, path: str, flags: int = _PATH_FLAGS) -> int:
    """Open `path` resolved inside the root; raises OSError as open(2) would."""
    rel = "/".join(_parts(path)) or "."
    return openat2(rootfd, rel, flags, _RESOLVE)


def fd_path(fd: int) -> str:
    """The magic link through which mount(2) reaches an opened path."""
    return f"/proc/self/fd/{fd}"


def ensure(rootfd: int, path: str, kind: Literal["dir", "file"]) -> tuple[int, Stubs]:
    """Open `path` inside the root, creating it (and missing parents) when absent.

    Returns an O_PATH fd and the stubs made. A dangling symlink in the way is an error:
    creating its target would write where the image does not expect.
    """
    with contextlib.suppress(FileNotFoundError):
        return open_path(rootfd, path), Stubs()
    parts = _parts(path)
    created: list[str] = []
    touched: list[tuple[str, int, int]] = []
    for i, name in enumerate(parts):
        sub = "/".join(parts[: i + 1])
        try:
            os.close(open_path(rootfd, sub))
            continue
        except FileNotFoundError:
            pass
        parent = "/".join(parts[:i]) or "."
        pfd = open_path(rootfd, parent, _PATH_FLAGS | os.O_DIRECTORY)
        try:
            if not created:
                st = os.stat(fd_path(pfd))
                touched.append((parent, st.st_atime_ns, st.st_mtime_ns))
            try:
                if i == len(parts) - 1 and kind == "file":
                    os.close(
                        os.open(
                            name,
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                            0o644,
                            dir_fd=pfd,
                        )
                    )
                else:
                    os.mkdir(name, 0o755, dir_fd=pfd)
            except FileExistsError:
                raise SandboxError(
                    f"mount target /{path.strip('/')}: /{sub} is a dangling symlink"
                ) from None
        finally:
            os.close(pfd)
        created.append(sub)
    return open_path(rootfd, path), Stubs(tuple(created), tuple(touched))


def remove(rootfd: int, stubs: Stubs) -> None:
    """Undo `ensure`: remove stubs deepest first, keep dirs the process wrote into."""
    for sub in reversed(stubs.created):
        parent, _, name = sub.rpartition("/")
        try:
            pfd = open_path(rootfd, parent or ".", _PATH_FLAGS | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            try:
                os.rmdir(name, dir_fd=pfd)
            except NotADirectoryError:
                os.unlink(name, dir_fd=pfd)
            except OSError as err:
                # ENOTEMPTY: the process created files below a stub dir; it stays.
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise
        finally:
            os.close(pfd)
    for path in stubs.emptied:  # (in the upper dir itself: the skeleton's copy is below)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            try:
                os.rmdir(path)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
    # Newest first: when several stubs went into one dir, the first record holds its
    # original times and must be applied last; the skeleton's were taken before any.
    for sub, atime_ns, mtime_ns in reversed(stubs.touched):
        _restore_times(rootfd, sub, atime_ns, mtime_ns, always=True)
    for sub, atime_ns, mtime_ns in stubs.shown:
        _restore_times(rootfd, sub, atime_ns, mtime_ns, always=False)


def _restore_times(rootfd: int, sub: str, atime_ns: int, mtime_ns: int, *, always: bool) -> None:
    """Put a dir's times back; unless `always`, only a changed mtime (a utime of a dir
    the run left alone would copy it up)."""
    with contextlib.suppress(FileNotFoundError):
        fd = open_path(rootfd, sub, _PATH_FLAGS | os.O_DIRECTORY)
        try:
            if always or os.fstat(fd).st_mtime_ns != mtime_ns:
                os.utime(fd_path(fd), ns=(atime_ns, mtime_ns))
        finally:
            os.close(fd)
