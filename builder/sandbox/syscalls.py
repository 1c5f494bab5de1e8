"""The Linux system calls Python 3.11 does not wrap, through ctypes on libc.

Every wrapper raises SyscallError (a SandboxError carrying the errno) naming the call and
its argument, so a failed setup step reads as `mount /proc: Operation not permitted`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct

from builder.errors import SandboxError

# <sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# <sys/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
# <linux/capability.h>: version 3 takes two 32-bit words per set.
_CAPABILITY_VERSION_3 = 0x20080522

# <linux/openat2.h>
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

# x86_64 and aarch64 share neither table, so name both (the others are rare hosts).
# (The new mount API's numbers are the same on every architecture: 428 and up.)
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "openat2": 437, "rt_sigaction": 13},
    "aarch64": {"pivot_root": 41, "openat2": 437, "rt_sigaction": 134},
}
_OPEN_TREE, _MOVE_MOUNT, _MOUNT_SETATTR = 428, 429, 442
# <linux/mount.h>
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_IDMAP = 0x100000


class SyscallError(SandboxError):
    """A system call failed during sandbox setup; `errno` is the kernel's answer."""

    def __init__(self, what: str, errno: int) -> None:
        super().__init__(f"{what}: {os.strerror(errno)}")
        self.errno = errno


@functools.cache
def _libc() -> ctypes.CDLL:
    # A read-only handle, loaded once; find_library would spawn ldconfig (slow start).
    return ctypes.CDLL("libc.so.6", use_errno=True)


# The libc functions this module calls. A ctypes function is looked up (dlsym) and made on
# its first use, and libc itself is loaded on the first call: ~1 ms that every fresh fork
# (a sandbox's supervisor and pid 1) paid again. resolve_ahead() does it in the forking
# process, once.
_FUNCTIONS = ("capset", "mount", "prctl", "sethostname", "setns", "syscall", "umount2", "unshare")


def resolve_ahead() -> None:
    """Load libc and look up the functions (and syscall numbers) used here, so that a
    fork finds them ready."""
    libc = _libc()
    for name in _FUNCTIONS:
        getattr(libc, name)
    for name in _SYSCALLS.get(os.uname().machine, ()):  # (an unknown one fails on use)
        _nr(name)


@functools.cache
def _nr(name: str) -> int:
    machine = os.uname().machine
    table = _SYSCALLS.get(machine)
    if table is None:
        raise SandboxError(f"sandbox: unsupported architecture {machine}")
    return table[name]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise SyscallError(what, ctypes.get_errno())
    return ret


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc().unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace open at `fd` (os.setns is Python 3.12's)."""
    _check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
    what: str | None = None,
) -> None:
    """mount(2). `what` names the step in errors (targets are often /proc/self/fd/N)."""
    ret = _libc().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, what or f"mount {fstype or source} on {target}")


def umount2(target: str, flags: int) -> None:
    _check(_libc().umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    libc = _libc()
    ret = libc.syscall(ctypes.c_long(_nr("pivot_root")), _b(new_root), _b(put_old))
    _check(ret, f"pivot_root {new_root}")


def default_libc_signal(signum: int) -> None:
    """SIG_DFL for one of the signals libc keeps for itself (glibc's 32 and 33: its
    sigaction refuses them, and so does Python's signal module), through the raw
    rt_sigaction. An ignored one survives exec: a CI runner may hand us one ignored."""
    # struct kernel_sigaction, all zero: handler SIG_DFL, no flags, no restorer, empty mask.
    action = ctypes.create_string_buffer(32)
    ret = _libc().syscall(
        ctypes.c_long(_nr("rt_sigaction")), ctypes.c_int(signum), action, None, ctypes.c_size_t(8)
    )
    _check(ret, f"rt_sigaction({signum})")


def inotify_init1(flags: int) -> int:
    return _check(_libc().inotify_init1(ctypes.c_int(flags)), "inotify_init1")


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    ret = _libc().inotify_add_watch(ctypes.c_int(fd), _b(path), ctypes.c_uint32(mask))
    return _check(ret, f"inotify_add_watch {path}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc().sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname {name}")


def prctl(option: int, arg: int, what: str, arg3: int = 0) -> int:
    """prctl(2) with integer arguments; `what` names the option in errors."""
    ret = _libc().prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    return _check(ret, f"prctl({what})")


def get_pdeathsig() -> int:
    """The signal set_pdeathsig asked for (0: none)."""
    sig = ctypes.c_int(0)
    ret = _libc().prctl(
        ctypes.c_int(PR_GET_PDEATHSIG),
        ctypes.byref(sig),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(ret, "prctl(PR_GET_PDEATHSIG)")
    return sig.value


def set_pdeathsig(signum: int) -> None:
    """Ask the kernel to send `signum` to us when the thread that forked us dies."""
    prctl(PR_SET_PDEATHSIG, signum, "PR_SET_PDEATHSIG")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for this thread: each set a bit mask of capability numbers."""
    header = struct.pack("=Ii", _CAPABILITY_VERSION_3, 0)
    data = b"".join(
        struct.pack(
            "=III",
            effective >> shift & 0xFFFFFFFF,
            permitted >> shift & 0xFFFFFFFF,
            inheritable >> shift & 0xFFFFFFFF,
        )
        for shift in (0, 32)
    )
    _check(_libc().capset(ctypes.c_char_p(header), ctypes.c_char_p(data)), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load_seccomp_filter(program: bytes) -> None:
    """Install a classic-BPF seccomp program (struct sock_filter[], 8 bytes each) on this
    thread. Without no_new_privs the kernel wants CAP_SYS_ADMIN in our user namespace."""
    if not program or len(program) % 8:
        raise SandboxError(f"seccomp: a filter of {len(program)} bytes is not a BPF program")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ret = _libc().prctl(
        ctypes.c_int(PR_SET_SECCOMP),
        ctypes.c_ulong(SECCOMP_MODE_FILTER),
        ctypes.byref(prog),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(ret, "prctl(PR_SET_SECCOMP)")


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): with RESOLVE_IN_ROOT every symlink and `..` stays below `dirfd`.

    Raises OSError (not SyscallError) because callers branch on ENOENT/EEXIST.
    """
    how = struct.pack("=QQQ", flags, mode, resolve)
    buf = ctypes.create_string_buffer(how, len(how))
    ret = _libc().syscall(
        ctypes.c_long(_nr("openat2")),
        ctypes.c_int(dirfd),
        os.fsencode(path),
        buf,
        ctypes.c_size_t(len(how)),
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(ret)


def open_tree_clone(path: str, recursive: bool = False) -> int:
    """open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `path` (its
    submounts too if `recursive`), as an fd."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    ret = _libc().syscall(
        ctypes.c_long(_OPEN_TREE), ctypes.c_int(-100), os.fsencode(path), ctypes.c_uint(flags)
    )
    return _check(ret, f"open_tree {path}")


def set_idmap(tree_fd: int, userns_fd: int, recursive: bool = False) -> None:
    """mount_setattr(2) MOUNT_ATTR_IDMAP: ids on disk show through the detached mount
    `tree_fd` as the user namespace `userns_fd` maps them (disk id N -> its outside id)."""
    attr = struct.pack("=QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns_fd)  # struct mount_attr
    buf = ctypes.create_string_buffer(attr, len(attr))
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    ret = _libc().syscall(
        ctypes.c_long(_MOUNT_SETATTR),
        ctypes.c_int(tree_fd),
        b"",
        ctypes.c_uint(flags),
        buf,
        ctypes.c_size_t(len(attr)),
    )
    _check(ret, "mount_setattr(MOUNT_ATTR_IDMAP)")


def move_mount(tree_fd: int, target_fd: int, what: str) -> None:
    """move_mount(2): attach the detached mount `tree_fd` on the dir (or file) `target_fd`."""
    ret = _libc().syscall(
        ctypes.c_long(_MOVE_MOUNT),
        ctypes.c_int(tree_fd),
        b"",
        ctypes.c_int(target_fd),
        b"",
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
    )
    _check(ret, what)


def set_fsids(uid: int, gid: int) -> None:
    """setfsuid/setfsgid: the ids file operations (and a mount's creator) act as. They
    report no error: read back what took."""
    libc = _libc()
    libc.setfsgid(ctypes.c_uint(gid))
    libc.setfsuid(ctypes.c_uint(uid))
    if (
        libc.setfsuid(ctypes.c_uint(0xFFFFFFFF)) != uid
        or libc.setfsgid(ctypes.c_uint(0xFFFFFFFF)) != gid
    ):
        raise SandboxError(f"setfsuid/setfsgid {uid}/{gid}: refused")


def loopback_up() -> None:
    """Set IFF_UP on lo via SIOCGIFFLAGS/SIOCSIFFLAGS on a throwaway socket. Raw libc calls:
    importing the socket module in the forked child would cost more than the whole setup."""
    libc = _libc()
    sock = _check(
        libc.socket(ctypes.c_int(2), ctypes.c_int(2 | 0o2000000), ctypes.c_int(0)),
        "socket(AF_INET)",
    )  # SOCK_DGRAM | SOCK_CLOEXEC
    try:
        req = ctypes.create_string_buffer(b"lo", 40)  # struct ifreq: name[16], union
        _check(libc.ioctl(ctypes.c_int(sock), ctypes.c_ulong(0x8913), req), "SIOCGIFFLAGS lo")
        flags = struct.unpack_from("=H", req.raw, 16)[0] | 0x1  # IFF_UP
        struct.pack_into("=H", req, 16, flags)
        _check(libc.ioctl(ctypes.c_int(sock), ctypes.c_ulong(0x8914), req), "SIOCSIFFLAGS lo")
    finally:
        os.close(sock)
