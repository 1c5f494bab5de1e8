"""The root file system of a sandbox: overlay or bind root, mount-point stubs, /proc, /dev,
/sys, the /etc files, the caller's binds and tmpfs, and pivot_root.

Two processes share the work (see process.py). The supervisor mounts the root in its own
private mount namespace and creates the stubs; the container's pid 1 copies that namespace,
mounts everything else on top and pivots. The supervisor's view never gets those mounts, so
once the process ends it can remove the stubs from the bare root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from builder import record
from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox import inroot, skeleton
from builder.sandbox.idmap import in_initial_user_namespace
from builder.sandbox.spec import DirRoot, Mount, OverlayRoot, SandboxSpec, normalize
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
    move_mount,
    pivot_root,
    umount2,
)

if TYPE_CHECKING:  # only --userns=auto loads it
    import subprocess

    from builder.sandbox.idmapped import Idmapping

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


def private_tmpfs(directory: str) -> None:
    """A tmpfs on `directory` (the sandbox's state dir) in our private mount namespace: the
    per-run files and mount points are made in memory, the host sees the dir empty, and
    they go with the namespace. On disk, each dir or file made and removed cost 1-2 ms on
    this machine's ext4 with online discard (issue 9: `run` start-up)."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    mount("tmpfs", directory, "tmpfs", flags, "mode=0700,size=1m", what="mount the state tmpfs")


def mount_root(
    root: OverlayRoot | DirRoot,
    target: str,
    scratch: str,
    userns: bool,
    idmap: Idmapping | None = None,
) -> subprocess.Popen[bytes] | None:
    """Mount the root at `target` (an empty dir of ours); with `idmap`, its files show
    with the container's ids (idmapped.py). A fuse-overlayfs root returns its daemon, for
    fuse.stop once `target` is unmounted."""
    if isinstance(root, DirRoot):
        _bind_at(str(root.path), target, idmap, what=f"bind root {root.path}")
        remount_nodev(target)  # a bind ignores MS_NODEV: only a remount sets it
        return None
    # Top-most first, each dir once: overlayfs refuses a stack that holds one dir twice
    # (ELOOP), which two identical layers (two empty RUN steps) would make. Dropping the
    # lower copies changes nothing: the top-most copy of a layer shadows all of them.
    lowers = list(dict.fromkeys(str(p) for p in reversed(root.lowers)))
    if (where := _skeleton(root)) is not None:  # below every layer: the mount points
        lowers.append(skeleton.ensure(where))
    lowers = lowers or [scratch]
    adopt_root_attrs(str(root.upper), lowers[0] if root.lowers else None)
    if root.fuse:
        if idmap is not None:
            raise SandboxError(
                "the fuse-overlayfs snapshotter cannot map ids: --userns=auto needs"
                " overlayfs or the native snapshotter"
            )
        from builder.sandbox import fuse

        return fuse.mount_fuse_overlay(
            lowers, str(root.upper), str(root.work), target, volatile=root.volatile
        )
    _mount_overlay(
        lowers, str(root.upper), str(root.work), target, userns, idmap, volatile=root.volatile
    )
    return None


def _skeleton(root: OverlayRoot | DirRoot) -> Path | None:
    """Where the root's skeleton is (skeleton.py), if it takes one: the kernel's overlayfs
    only (fuse-overlayfs numbers its inodes itself, which skeleton.Shown reads)."""
    if isinstance(root, OverlayRoot) and not root.fuse:
        return root.skeleton
    return None


def adopt_root_attrs(upper: str, top_lower: str | None) -> None:
    """overlayfs shows the merged `/` with the upper dir's mode and owner. A fresh upper
    dir is a store temp dir (0700): left so, it would lock a non-root USER out of `/`.
    It takes the image's own root instead: the top-most layer's, or 0755 root:root on
    scratch (what docker gives an image). An upper dir already in use keeps its own."""
    if any(os.scandir(upper)):
        return
    st = os.stat(top_lower) if top_lower is not None else None
    uid, gid = (st.st_uid, st.st_gid) if st is not None else (0, 0)
    with contextlib.suppress(OSError):  # unmapped ids without root: the caller's own stay
        os.chown(upper, uid, gid)
    os.chmod(upper, stat.S_IMODE(st.st_mode) if st is not None else 0o755)


def _mount_overlay(
    lowers: list[str],
    upper: str,
    work: str,
    target: str,
    userns: bool,
    idmap: Idmapping | None,
    *,
    volatile: bool,
) -> None:
    # The options string is limited to one page. Naming each dir by an fd number relative
    # to /proc/self/fd ("5:6:7") costs ~4 bytes a layer whatever the paths, and sidesteps
    # the escaping of ':' and ',' in paths.
    fds: list[int] = []
    keep: list[int] = []
    try:
        if idmap is None:
            for path in [*lowers, upper, work]:
                fds.append(_open_dir(path))
        else:
            _open_idmapped(lowers, upper, work, idmap, fds, keep)
        names = [str(fd) for fd in fds]
        # Plain upper dirs only: no redirect or metacopy xattrs the layer writer would have
        # to understand. In a user namespace (user.* xattrs) the kernel refuses
        # redirect_dir=off, which still follows redirects: nofollow neither makes nor
        # follows them.
        redirect = "nofollow,userxattr" if userns else "off"
        data = (
            f"lowerdir={':'.join(names[:-2])},upperdir={names[-2]},workdir={names[-1]}"
            f",metacopy=off,redirect_dir={redirect}"
        )
        options = data + (",volatile" if volatile else "")
        if len(options) >= 4096:
            raise SandboxError(f"overlay: {len(lowers)} layers make the options too long")
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir("/proc/self/fd")
            # nodev: a device node shipped in a layer (c 10 232, /dev/kvm) cannot be opened;
            # only the sandbox's own /dev holds nodes that work.
            with idmap.as_creator() if idmap is not None else contextlib.nullcontext():
                try:
                    mount(
                        "overlay", target, "overlay", MS_NODEV, options, what="mount overlay root"
                    )
                except SyscallError as err:
                    if not volatile or err.errno != errno.EINVAL:
                        raise
                    # A kernel before 5.10 has no "volatile": the syncs are only slower.
                    mount("overlay", target, "overlay", MS_NODEV, data, what="mount overlay root")
        finally:
            os.fchdir(cwd)
            os.close(cwd)
    finally:
        for fd in fds + keep:
            os.close(fd)


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    try:
        return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        raise SandboxError(f"overlay: {path}: {err.strerror}") from None


def _open_idmapped(
    lowers: list[str], upper: str, work: str, idmap: Idmapping, fds: list[int], keep: list[int]
) -> None:
    """Append to `fds` an idmapped mount of each lower dir, then the upper and work dirs
    opened through one idmapped mount of the dir holding both (overlayfs wants the two
    on the same mount). That mount goes to `keep`: closing its fd would dissolve it, and
    overlayfs can only take the dirs of a mount that still exists."""
    for path in lowers:
        fds.append(idmap.clone(path))
    parent = os.path.commonpath([upper, work])
    tree = idmap.clone(parent)
    keep.append(tree)
    for path in (upper, work):
        fds.append(_open_dir(os.path.relpath(path, parent), dir_fd=tree))


def _bind_at(source: str, target: str, idmap: Idmapping | None, what: str) -> None:
    """A recursive bind of `source` on `target`, idmapped if `idmap` is given."""
    if idmap is None:
        mount(source, target, None, MS_BIND | MS_REC, what=what)
        return
    tree = idmap.clone(source, recursive=True)
    try:
        fd = os.open(target, os.O_PATH | os.O_CLOEXEC)  # (a /proc/self/fd/N path: followed)
        try:
            move_mount(tree, fd, what)
        finally:
            os.close(fd)
    finally:
        os.close(tree)


def place_files(spec: SandboxSpec, directory: str) -> SandboxSpec:
    """Write the spec's "file" mounts (secrets) to a tmpfs mounted on `directory` in our
    private mount namespace — the host sees an empty dir, and the bytes are freed when the
    namespace ends, however the sandbox ends — and return the spec with each one a
    read-only bind of its file."""
    if not any(m.kind == "file" for m in spec.mounts):
        return spec
    os.makedirs(directory, 0o700, exist_ok=True)
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    mount("tmpfs", directory, "tmpfs", flags, "mode=0755", what="mount tmpfs for secrets")
    placed = []
    for i, m in enumerate(spec.mounts):
        if m.kind != "file" or m.data is None:
            placed.append(m)
            continue
        path = f"{directory}/{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, m.data)  # a tmpfs write of a few hundred KB at most: whole
            os.fchmod(fd, m.mode)
            if os.geteuid() == 0:
                os.fchown(fd, m.uid, m.gid)
        finally:
            os.close(fd)
        placed.append(Mount(m.target, "bind", Path(path), readonly=True))
    return record.replace(spec, mounts=tuple(placed))


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
        if not _in_dev(m.target):  # those are made in our fresh /dev (populate)
            points.append((normalize(m.target), _point_kind(m), True))
    return points


def _in_dev(target: str) -> bool:
    return normalize(target).startswith("/dev/")


def _point_kind(m: Mount) -> Literal["dir", "file"]:
    is_dir = m.kind == "tmpfs" or (m.source is not None and os.path.isdir(m.source))
    return "dir" if is_dir else "file"


def make_stubs(target: str, spec: SandboxSpec) -> inroot.Stubs:
    rootfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stubs = inroot.Stubs()
    shown = None
    try:
        root = spec.root
        where = _skeleton(root)
        # (A discarded upper dir is never tidied: nothing to tell.)
        if where is not None and isinstance(root, OverlayRoot) and not root.discarded:
            shown = skeleton.Shown(rootfd, where, root.upper)  # before any stub
        for path, kind, required in mountpoints(spec):
            try:
                fd, made = inroot.ensure(rootfd, path, kind)
            except SandboxError:
                if required:
                    raise
                continue
            except OSError as err:
                raise SandboxError(f"mount point /{path.strip('/')}: {err.strerror}") from None
            if shown is not None and not made.created:
                shown.note(path, fd)
            os.close(fd)
            stubs += made
        if shown is not None:
            stubs += shown.stubs()
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


def _kept_flags(path: str, *, readonly: bool = False) -> int:
    """The flags of the mount at `path` a remount must repeat (the kernel refuses to clear
    a locked one), read-only included when `readonly`."""
    kept = 0
    with contextlib.suppress(OSError):
        st = os.statvfs(path)
        for st_flag, ms_flag in _KEEP_FLAGS:
            if st.f_flag & st_flag:
                kept |= ms_flag
        if readonly and st.f_flag & os.ST_RDONLY:
            kept |= MS_RDONLY
    return kept


def remount_readonly(path: str) -> None:
    """Make the mount at `path` read-only, keeping its (possibly locked) flags."""
    kept = _kept_flags(path)
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, what="remount read-only")


def remount_nodev(path: str, *, readonly: bool = False) -> None:
    """Make the mount at `path` nodev (device nodes on it cannot be opened), and read-only
    if `readonly`, in one remount, keeping the rest of its flags, read-only included."""
    flags = _kept_flags(path, readonly=True) | MS_NODEV | (MS_RDONLY if readonly else 0)
    mount(None, path, None, MS_REMOUNT | MS_BIND | flags, what="remount nodev")


def remount_writable(path: str) -> None:
    mount(None, path, None, MS_REMOUNT | MS_BIND, what="remount writable")


# ---- pid 1 side: everything on top, then pivot ----------------------------------------


def populate(
    rootdir: str, spec: SandboxSpec, etc: EtcFiles, idmap: Idmapping | None = None
) -> None:
    """Mount /proc, /sys, /dev, the /etc files and the spec's mounts inside the root. With
    `idmap` (--userns=auto), the tmpfs mounts belong to container root, the /etc files show
    as root's, and so do the spec's binds if it asks (idmap_binds)."""
    rootfd = os.open(rootdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    binds = idmap if spec.idmap_binds else None
    owner = "" if idmap is None else f",uid={idmap.ids.uid},gid={idmap.ids.gid}"
    try:
        _on(rootfd, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _protect_proc(rootfd)
        _mount_sys(rootfd)
        _mount_dev(rootfd, owner)
        for target, source in etc.pairs():
            _bind(rootfd, target, source, readonly=True, optional=True, idmap=idmap)
        for m in sorted(spec.mounts, key=lambda m: normalize(m.target).count("/")):
            target = normalize(m.target)
            if _in_dev(target):  # (RUN <<EOF with a shebang: /dev/pipes) in the /dev tmpfs
                fd, _made = inroot.ensure(rootfd, target, _point_kind(m))
                os.close(fd)
            if m.kind == "tmpfs":
                flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if m.readonly else 0)
                data = f"mode=1777{owner}" + (f",{m.options}" if m.options else "")  # last wins
                _on(rootfd, target, "tmpfs", "tmpfs", flags, data)
            else:
                _bind(
                    rootfd, target, str(m.source), readonly=m.readonly, optional=False, idmap=binds
                )
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


def _bind(
    rootfd: int,
    target: str,
    source: str,
    *,
    readonly: bool,
    optional: bool,
    idmap: Idmapping | None = None,
) -> None:
    try:
        fd = inroot.open_path(rootfd, target)
    except OSError as err:
        if optional:
            return
        raise SandboxError(f"mount point /{target.strip('/')}: {err.strerror}") from None
    try:
        _bind_at(source, inroot.fd_path(fd), idmap, what=f"bind {source} on /{target.strip('/')}")
    finally:
        os.close(fd)
    # The fd above names the covered inode; reopen to reach the new mount's root.
    fd = _open(rootfd, target)
    try:
        # Every bind (the context, a cache, a secret, the /etc files) is nodev, as the root
        # is; one remount makes it read-only too.
        remount_nodev(inroot.fd_path(fd), readonly=readonly)
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
            try:
                st = os.stat(path, follow_symlinks=False)  # one stat where two were
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0", what=f"mask /proc/{name}")
            else:
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
# Docker also hides powercap: its RAPL energy counters leak secrets (CVE-2020-8694).
SYS_MASKED = ("firmware", "devices/virtual/powercap")


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


def _mount_dev(rootfd: int, owner: str = "") -> None:
    # nodev: a node made in /dev (CAP_MKNOD is in Docker's set) opens nothing; the nodes
    # bound below keep the flags of the host's /dev mount they come from. `owner`: the
    # tmpfs mount options that give them to container root (--userns=auto).
    flags = MS_NOSUID | MS_NODEV | MS_STRICTATIME
    _on(rootfd, "dev", "tmpfs", "tmpfs", flags, f"mode=755,size=65536k{owner}")
    devfd = _open(rootfd, "dev")  # now the fresh tmpfs: ours, no symlinks to fear
    try:
        dev = inroot.fd_path(devfd)
        for name in DEV_NODES:
            node = f"{dev}/{name}"
            os.mknod(node, stat.S_IFREG | 0o666)  # the mount point: one syscall, no fd
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
            f"mode=1777,size=65536k{owner}",
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


def mount_overlay(lower: str, upper: str, work: str, target: str) -> None:
    """An overlay of one lower dir at `target`, with the options a root gets here (a user
    namespace's `userxattr`): what the snapshotter's probe tries."""
    userns = not in_initial_user_namespace()
    _mount_overlay([lower], upper, work, target, userns, None, volatile=False)
