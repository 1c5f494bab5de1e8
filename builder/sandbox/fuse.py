"""The fuse-overlayfs root: an overlay served by the fuse-overlayfs program, for where the
kernel's overlayfs cannot be mounted (sandbox/snapshotter.py).

The supervisor mounts it itself, in its private mount namespace: it opens /dev/fuse, mounts
a FUSE file system on that fd, and hands the fd to `fuse-overlayfs -f ... /dev/fd/N` (libfuse
takes an fd mounted by its caller). So the mount is made where the overlay's would be, its
errors are ours to word, and the daemon is a child of the supervisor, in the caller's pid
namespace (forked before the sandbox's own exists: it must not become its init), killed by
its parent-death signal if the supervisor dies: a killed CLI leaves no daemon, and the
mount goes with the namespace. After the run the supervisor unmounts, which ends the FUSE
connection, and waits for the daemon to exit.

`writeback=0`: every write reaches the upper dir before it returns, so nothing depends on
a flush at unmount. The upper dir it leaves is turned into overlayfs's form by
layer/fuse_upper.py before a layer is written from it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess

from builder.errors import SandboxError
from builder.sandbox.syscalls import (
    MNT_DETACH,
    MS_NODEV,
    SyscallError,
    mount,
    set_pdeathsig,
    umount2,
)

PROGRAM = "fuse-overlayfs"
DEVICE = "/dev/fuse"
_EXIT_WAIT = 10.0  # seconds the daemon gets to see its connection end before SIGKILL


def mount_fuse_overlay(
    lowers: list[str], upper: str, work: str, target: str, *, volatile: bool
) -> subprocess.Popen[bytes]:
    """Mount fuse-overlayfs of `lowers` (top-most first) and `upper` at `target`; the
    daemon serving it, for `stop` once the mount is gone."""
    program = shutil.which(PROGRAM)
    if program is None:
        raise SandboxError(
            f"snapshotter fuse-overlayfs: {PROGRAM} is not installed (not found in $PATH)"
        )
    for path in [*lowers, upper, work]:
        if ":" in path or "," in path:  # its option syntax has no escape for them
            raise SandboxError(f"fuse-overlayfs: a path with ':' or ',' cannot be a layer: {path}")
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work},writeback=0" + (
        ",fsync=0" if volatile else ""
    )
    fd = _open_device()
    try:
        data = (
            f"fd={fd},rootmode={stat.S_IFDIR:o},user_id={os.geteuid()},group_id={os.getegid()}"
            ",default_permissions,allow_other"
        )
        # nodev, as the overlay root: a device node shipped in a layer cannot be opened.
        mount(PROGRAM, target, f"fuse.{PROGRAM}", MS_NODEV, data, what="mount fuse-overlayfs root")
        try:
            daemon = _start(program, options, fd)
        except BaseException:
            umount2(target, MNT_DETACH)
            raise
    finally:
        os.close(fd)  # the daemon holds the connection now; ours would keep it alive
    try:
        os.stat(target)  # answered once the daemon serves; ENOTCONN if it died
    except OSError as err:
        with contextlib.suppress(SyscallError):
            umount2(target, MNT_DETACH)
        message = _stopped(daemon)
        raise SandboxError(f"fuse-overlayfs: {message or err.strerror}") from None
    return daemon


def _open_device() -> int:
    try:
        return os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        hint = ""
        if isinstance(err, PermissionError):
            hint = (
                f" (without root, {DEVICE} must be open to all users, mode 0666 as Debian"
                " ships it; or use BUILDER_SNAPSHOTTER=native)"
            )
        raise SandboxError(f"fuse-overlayfs: open {DEVICE}: {err.strerror}{hint}") from None


def _start(program: str, options: str, fd: int) -> subprocess.Popen[bytes]:
    parent = os.getpid()

    def die_with_parent() -> None:
        set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    log = os.memfd_create("fuse-overlayfs.log", os.MFD_CLOEXEC)
    try:
        daemon = subprocess.Popen(
            [program, "-f", "-o", options, f"/dev/fd/{fd}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            pass_fds=(fd,),
            preexec_fn=die_with_parent,  # the supervisor has one thread: safe
        )
    except OSError as err:
        os.close(log)
        raise SandboxError(f"fuse-overlayfs: {program}: {err.strerror}") from None
    daemon.stderr = os.fdopen(log, "rb")  # read only if it fails
    return daemon


def stop(daemon: subprocess.Popen[bytes], target: str) -> None:
    """Unmount `target` (if the caller has not) and wait for the daemon to see its
    connection end (it has nothing left to write: writeback=0), killing it if it does not."""
    with contextlib.suppress(SyscallError):
        umount2(target, MNT_DETACH)
    _stopped(daemon)


def _stopped(daemon: subprocess.Popen[bytes]) -> str:
    """Wait for (or kill) the daemon; the last lines it wrote to stderr."""
    try:
        daemon.wait(_EXIT_WAIT)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    text = b""
    if daemon.stderr is not None:
        with daemon.stderr:
            text = os.pread(daemon.stderr.fileno(), 4096, 0)
    lines = [line.strip() for line in text.decode(errors="replace").splitlines()]
    # It says "unknown argument ignored: lazytime" for the mount options libfuse passes on.
    return "; ".join(line for line in lines if line and "argument ignored" not in line)
