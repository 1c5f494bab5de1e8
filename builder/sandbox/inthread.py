"""Our own in-root writers (COPY, ADD, COPY --from, WORKDIR) run in a thread of the caller,
not a sandbox: the overlay mounted in a mount namespace of that thread's own, and the
thread's root moved into it, so every path the writer names (and every symlink the image
holds) resolves inside the image, as after the sandbox's pivot_root.

Why: a sandbox is a fork of the caller (a big Python heap: hundreds of copy-on-write
faults), a supervisor, a pid 1 in new pid/net/ipc/uts/user namespaces with /proc, /dev and
the /etc files mounted: 30-35 ms of a COPY step of one small file, where the copy itself
takes well under one. A writer is our code and runs no process of the image's, so it needs
only the root; BuildKit's file operations do not start a container either.

How, in the thread: unshare(CLONE_NEWNS | CLONE_FS) gives it a copy of the mount namespace
and its own root, cwd and umask (legal in a threaded process, unlike a user namespace;
the other threads keep theirs); its mounts are made private, the overlay is mounted on the
mount point (with the sandbox's own options, mounts.mount_root, without the skeleton of
mount points: nothing is mounted on them here, and a COPY to /dev or /proc lands in the
layer, as docker's does); chroot into it, run the writer, chroot back out (an fd of the old
root), unmount. The thread then ends, and its namespace and root with it: a writer that
fails half-way leaves nothing mounted anywhere.

What the writer's thread must not do inside the image's root, and why it holds:
- import: Python would look for a module in the image's own /usr/lib/python3...; a finder
  first on sys.meta_path refuses every import in such a thread (`ImportError`), so the
  writers' modules are imported before (extract.preload for the decompressors);
- call libc's name service (getpwuid, getgrgid: tarfile.gettarinfo does): glibc would read
  the image's nsswitch.conf and could load its libnss_*.so into our process; the writers
  read passwd and group with our own parser (users.py) and make tar headers themselves;
- run another thread's finalizers: the cyclic collector is held off while a writer runs
  (a finalizer's path would be resolved in the image).

Only as host root (in the initial user namespace) and on the kernel's overlayfs: a rootless
caller, fuse-overlayfs and the copying snapshotter keep the sandbox (`available`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from builder.errors import SandboxError
from builder.record import replace
from builder.sandbox import mounts
from builder.sandbox.idmap import in_initial_user_namespace
from builder.sandbox.spec import DirRoot, OverlayRoot
from builder.sandbox.syscalls import (
    CLONE_NEWNS,
    MNT_DETACH,
    SyscallError,
    resolve_ahead,
    umount2,
    unshare,
)

__all__ = ["Unavailable", "available", "call"]

CLONE_FS = 0x00000200  # the thread's own root, cwd and umask

_state = threading.local()  # .rooted: this thread's root is an image's
_resolved = functools.cache(resolve_ahead)


class Unavailable(SandboxError):
    """The thread could not be set up (no mount namespace or overlay for it here, before
    anything was written): the caller runs the writer in the sandbox instead."""


@functools.cache
def _host_root() -> bool:
    return os.geteuid() == 0 and in_initial_user_namespace()


def available(root: OverlayRoot | DirRoot) -> bool:
    """Whether `call` serves this root here."""
    return isinstance(root, OverlayRoot) and not root.fuse and _host_root()


class _NoImport:
    """First on sys.meta_path: no module is looked for while a thread's root is an image's.
    (A module imported already is found in sys.modules before any finder is asked.)"""

    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if getattr(_state, "rooted", False):
            raise ImportError(f"{name}: no import inside an image's root (import it before)")
        return None


_GUARD = _NoImport()


class _Collector:
    """The cyclic collector held off while any thread's root is an image's: a collection
    there would run other code's finalizers (a temp dir's removal) in the image's root."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = True

    def hold(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                gc.enable()


_COLLECTOR = _Collector()


@contextlib.contextmanager
def _rooted() -> Iterator[None]:
    """This thread's root is an image's: no import, no collection meanwhile."""
    if not sys.meta_path or sys.meta_path[0] is not _GUARD:  # (another finder may have
        with contextlib.suppress(ValueError):  # been put first since: ours goes first again)
            sys.meta_path.remove(_GUARD)
        sys.meta_path.insert(0, _GUARD)
    _COLLECTOR.hold()
    _state.rooted = True
    try:
        yield
    finally:
        _state.rooted = False
        _COLLECTOR.release()


def call(root: OverlayRoot, mountpoint: str, fn: Callable[[], int], output: int) -> int:
    """Run FN in a thread whose root is ROOT, mounted on MOUNTPOINT (an empty dir of the
    caller's; the mount is seen by that thread alone, so calls at once may share one),
    with its cwd at "/"; FN's value is the status.
    An exception FN raises becomes a line on OUTPUT and status 1, as in the sandbox
    (container.run_callable). Raises Unavailable if the thread could not be set up."""
    _resolved()  # libc's functions looked up here, not in the image's root
    outcome: list[int | BaseException] = []

    def body() -> None:
        try:
            outcome.append(_in_root(root, mountpoint, fn, output))
        except BaseException as err:  # handed to the caller's thread
            outcome.append(err)

    thread = threading.Thread(target=body, name="builder-in-root", daemon=True)
    thread.start()
    thread.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _in_root(root: OverlayRoot, mountpoint: str, fn: Callable[[], int], output: int) -> int:
    try:
        unshare(CLONE_NEWNS | CLONE_FS)
        mounts.make_private()
    except SyscallError as err:  # (a seccomp profile of our own container may refuse it)
        raise Unavailable(f"in-thread root: {err}") from err
    # (No lower at all, FROM scratch: the mount point itself, still empty, serves as one.)
    mounts.mount_root(replace(root, skeleton=None), mountpoint, mountpoint, userns=False)
    try:
        host = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(mountpoint)
            os.chroot(".")
            try:
                with _rooted():
                    return _status(fn, output)
            finally:
                os.fchdir(host)
                os.chroot(".")  # back to the host's root
        finally:
            os.close(host)
    finally:
        # Now, not when the thread's namespace dies after it: the caller reads and writes
        # the upper dir next.
        umount2(mountpoint, MNT_DETACH)


def _status(fn: Callable[[], int], output: int) -> int:
    try:
        return int(fn()) & 0xFF
    except Exception as err:  # (not KeyboardInterrupt: only the main thread gets one)
        with contextlib.suppress(OSError):
            os.write(output, f"builder: {type(err).__name__}: {err}\n".encode(errors="replace"))
        return 1
