"""The root file system of a sandbox: overlay or bind root, mount-point stubs, /proc, /dev,
/sys, the /etc files, the caller's binds and tmpfs, and pivot_root.

Two processes share the work (see process.py). The supervisor mounts the root in its own
private mount namespace and creates the stubs; the container's pid 1 copies that namespace,
mounts everything else on top and pivots. The supervisor's view never gets those mounts, so
once the process ends it can remove the stubs from the bare root.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Literal

from builder.errors import SandboxError
from builder.sandbox import inroot
from builder.sandbox.spec import DirRoot, OverlayRoot, SandboxSpec, normalize
from builder.sandbox.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_STRICTATIME,
    SyscallError,
    mount,
    pivot_root,
    umount2,
)

# Nodes bind-mounted from the host's /dev into a small tmpfs (what runc/docker expose).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
# statvfs flag -> mount flag. A read-only remount must repeat these or, in a user
# namespace, the kernel refuses to "unlock" them (EPERM).
_KEEP_FLAGS = (
    (2, MS_NOSUID),
    (4, MS_NODEV),
    (8, MS_NOEXEC),
    (1024, 0x400),
    (2048, 0x800),
    (4096, MS_RELATIME),
)


@dataclass(frozen=True)
class EtcFiles:
    """Host files bind-mounted read-only over the root's /etc entries."""

    hosts: str
    hostname: str
    resolv_conf: str

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return (
            ("etc/hosts", self.hosts),
            ("etc/hostname", self.hostname),
            ("etc/resolv.conf", self.resolv_conf),
        )


# ---- supervisor side: the bare root ---------------------------------------------------


def make_private() -> None:
    """Mounts made from here on must not propagate back to the host."""
    mount(None, "/", None, MS_REC | MS_PRIVATE, what="make mounts private")


def mount_root(root: OverlayRoot | DirRoot, target: str, scratch: str, userns: bool) -> None:
    """Mount the root at `target` (an empty dir of ours)."""
    if isinstance(root, DirRoot):
        mount(str(root.path), target, None, MS_BIND | MS_REC, what=f"bind root {root.path}")
        return
    # Top-most first, each dir once: overlayfs refuses a stack that holds one dir twice
    # (ELOOP), which two identical layers (two empty RUN steps) would make. Dropping the
    # lower copies changes nothing: the top-most copy of a layer shadows all of them.
    lowers = list(dict.fromkeys(str(p) for p in reversed(root.lowers))) or [scratch]
    _mount_overlay(lowers, str(root.upper), str(root.work), target, userns)


def _mount_overlay(lowers: list[str], upper: str, work: str, target: str, userns: bool) -> None:
    # The options string is limited to one page. Naming each dir by an fd number relative
    # to /proc/self/fd ("5:6:7") costs ~4 bytes a layer whatever the paths, and sidesteps
    # the escaping of ':' and ',' in paths.
    fds: list[int] = []
    try:
        for path in [*lowers, upper, work]:
            try:
                fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
            except OSError as err:
                raise SandboxError(f"overlay: {path}: {err.strerror}") from None
        names = [str(fd) for fd in fds]
        data = (
            f"lowerdir={':'.join(names[:-2])},upperdir={names[-2]},workdir={names[-1]}"
            # Plain upper dirs only: no redirect or metacopy xattrs the layer writer
            # would have to understand.
            ",redirect_dir=off,metacopy=off"
        )
        if userns:
            data += ",userxattr"
        if len(data) >= 4096:
            raise SandboxError(f"overlay: {len(lowers)} layers make the options too long")
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir("/proc/self/fd")
            mount("overlay", target, "overlay", 0, data, what="mount overlay root")
        finally:
            os.fchdir(cwd)
            os.close(cwd)
    finally:
        for fd in fds:
            os.close(fd)


def mountpoints(spec: SandboxSpec) -> list[tuple[str, Literal["dir", "file"], bool]]:
    """(path, kind, required) of everything pid 1 will mount on."""
    points: list[tuple[str, Literal["dir", "file"], bool]] = [
        ("proc", "dir", True),
        ("sys", "dir", True),
        ("dev", "dir", True),
        # A dangling symlink in the image (resolv.conf -> /run/...) is left alone.
        ("etc/hosts", "file", False),
        ("etc/hostname", "file", False),
        ("etc/resolv.conf", "file", False),
    ]
    for m in spec.mounts:
        is_dir = m.kind == "tmpfs" or (m.source is not None and os.path.isdir(m.source))
        points.append((normalize(m.target), "dir" if is_dir else "file", True))
    return points


def make_stubs(target: str, spec: SandboxSpec) -> inroot.Stubs:
    rootfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stubs = inroot.Stubs()
    try:
        for path, kind, required in mountpoints(spec):
            try:
                fd, made = inroot.ensure(rootfd, path, kind)
            except SandboxError:
                if required:
                    raise
                continue
            except OSError as err:
                raise SandboxError(f"mount point /{path.strip('/')}: {err.strerror}") from None
            os.close(fd)
            stubs += made
    except BaseException:
        with contextlib.suppress(OSError):
            inroot.remove(rootfd, stubs)  # leave the root as we found it
        raise
    finally:
        os.close(rootfd)
    return stubs


def remove_stubs(target: str, stubs: inroot.Stubs) -> None:
    rootfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        inroot.remove(rootfd, stubs)
    except OSError as err:
        raise SandboxError(f"remove mount-point stubs: {err}") from None
    finally:
        os.close(rootfd)


def remount_readonly(path: str) -> None:
    """Make the mount at `path` read-only, keeping its (possibly locked) flags."""
    kept = 0
    with contextlib.suppress(OSError):
        st = os.statvfs(path)
        for st_flag, ms_flag in _KEEP_FLAGS:
            if st.f_flag & st_flag:
                kept |= ms_flag
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, what="remount read-only")


def remount_writable(path: str) -> None:
    mount(None, path, None, MS_REMOUNT | MS_BIND, what="remount writable")


# ---- pid 1 side: everything on top, then pivot ----------------------------------------


def populate(rootdir: str, spec: SandboxSpec, etc: EtcFiles) -> None:
    """Mount /proc, /sys, /dev, the /etc files and the spec's mounts inside the root."""
    rootfd = os.open(rootdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _on(rootfd, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _protect_proc(rootfd)
        _mount_sys(rootfd)
        _mount_dev(rootfd)
        for target, source in etc.pairs():
            _bind(rootfd, target, source, readonly=True, optional=True)
        for m in sorted(spec.mounts, key=lambda m: normalize(m.target).count("/")):
            target = normalize(m.target)
            if m.kind == "tmpfs":
                flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if m.readonly else 0)
                data = "mode=1777" + (f",{m.options}" if m.options else "")  # last one wins
                _on(rootfd, target, "tmpfs", "tmpfs", flags, data)
            else:
                _bind(rootfd, target, str(m.source), readonly=m.readonly, optional=False)
    finally:
        os.close(rootfd)


def _open(rootfd: int, target: str) -> int:
    try:
        return inroot.open_path(rootfd, target)
    except OSError as err:
        raise SandboxError(f"mount point /{target.strip('/')}: {err.strerror}") from None


def _on(
    rootfd: int, target: str, source: str, fstype: str, flags: int, data: str | None = None
) -> None:
    fd = _open(rootfd, target)
    try:
        mount(
            source,
            inroot.fd_path(fd),
            fstype,
            flags,
            data,
            what=f"mount {fstype} on /{target.strip('/')}",
        )
    finally:
        os.close(fd)


def _bind(rootfd: int, target: str, source: str, *, readonly: bool, optional: bool) -> None:
    try:
        fd = inroot.open_path(rootfd, target)
    except OSError as err:
        if optional:
            return
        raise SandboxError(f"mount point /{target.strip('/')}: {err.strerror}") from None
    try:
        mount(
            source,
            inroot.fd_path(fd),
            None,
            MS_BIND | MS_REC,
            what=f"bind {source} on /{target.strip('/')}",
        )
    finally:
        os.close(fd)
    if readonly:
        # The fd above names the covered inode; reopen to reach the new mount's root.
        fd = _open(rootfd, target)
        try:
            remount_readonly(inroot.fd_path(fd))
        finally:
            os.close(fd)


# The host-wide knobs /proc exposes, made read-only or hidden as runc does by default.
# This matters all the more here: as host root the ids are mapped one to one, so the
# sandbox's uid 0 passes the owner check on files like /proc/sys/kernel/core_pattern.
# These mounts are made before the user namespace exists, so the process cannot undo them.
PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs")
PROC_MASKED = (
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
)


def _protect_proc(rootfd: int) -> None:
    procfd = _open(rootfd, "proc")  # the fresh procfs we just mounted: ours
    try:
        proc = inroot.fd_path(procfd)
        for name in PROC_READONLY:
            path = f"{proc}/{name}"
            if os.path.lexists(path):
                mount(path, path, None, MS_BIND | MS_REC, what=f"bind /proc/{name}")
                remount_readonly(path)
        for name in PROC_MASKED:
            path = f"{proc}/{name}"
            if os.path.isdir(path):
                mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0", what=f"mask /proc/{name}")
            elif os.path.lexists(path):
                mount("/dev/null", path, None, MS_BIND, what=f"mask /proc/{name}")
    finally:
        os.close(procfd)


def _mount_sys(rootfd: int) -> None:
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    try:
        _on(rootfd, "sys", "sysfs", "sysfs", flags)
    except SyscallError:
        # Without our own net namespace in a user namespace the kernel refuses a fresh
        # sysfs; the host's, read-only, is what rootless runtimes show.
        _bind(rootfd, "sys", "/sys", readonly=True, optional=False)
    _mask_sys(rootfd)


# The firmware's tables (ACPI, DMI with serial numbers, EFI variables) say much about the
# host and are no container's business: runc hides them behind an empty read-only tmpfs.
SYS_MASKED = ("firmware",)


def _mask_sys(rootfd: int) -> None:
    sysfd = _open(rootfd, "sys")  # the sysfs we just mounted: ours
    try:
        sys_dir = inroot.fd_path(sysfd)
        for name in SYS_MASKED:
            path = f"{sys_dir}/{name}"
            if os.path.isdir(path):
                mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0", what=f"mask /sys/{name}")
    finally:
        os.close(sysfd)


def _mount_dev(rootfd: int) -> None:
    _on(rootfd, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    devfd = _open(rootfd, "dev")  # now the fresh tmpfs: ours, no symlinks to fear
    try:
        dev = inroot.fd_path(devfd)
        for name in DEV_NODES:
            node = f"{dev}/{name}"
            os.close(os.open(node, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
            mount(f"/dev/{name}", node, None, MS_BIND, what=f"bind /dev/{name}")
        for name, link in DEV_LINKS:
            os.symlink(link, f"{dev}/{name}")
        os.mkdir(f"{dev}/pts", 0o755)
        os.mkdir(f"{dev}/shm", 0o1777)
        mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
            what="mount devpts on /dev/pts",
        )
        mount(
            "shm",
            f"{dev}/shm",
            "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "mode=1777,size=65536k",
            what="mount tmpfs on /dev/shm",
        )
    except OSError as err:
        raise SandboxError(f"/dev: {err.strerror}") from None
    finally:
        os.close(devfd)


def pivot(rootdir: str) -> None:
    """Make `rootdir` our "/" and detach the host's root: nothing of it stays reachable."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootdir, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        # pivot_root(".", "."): the old root ends up stacked on "/"; no put_old dir needed
        # (a stub there would land in the layer). runc does the same.
        pivot_root(".", ".")
        os.fchdir(old)
        umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)
