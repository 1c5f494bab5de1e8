"""A thin ctypes binding to libseccomp (libseccomp.so.2): a filter made of rules in, the
classic-BPF program the kernel loads out.

Why our own binding: libseccomp's official Python binding is not on PyPI (Debian ships it
as python3-seccomp, built for the system interpreter, outside a venv), and PyPI's
pyseccomp has had no release since 2021. The C ABI behind soname 2 is stable, and we need
eight calls of it, all present since libseccomp 2.2. The program is exported once in the
caller; the sandbox's pid 1 then loads the bytes with one prctl and never calls libseccomp.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Sequence
from types import TracebackType

from builder.errors import SandboxError
from builder.record import dataclass

# <seccomp.h>
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_FLTATR_CTL_NNP = 3  # scmp_filter_attr: our loader decides about no_new_privs, not libseccomp
# The syscall dispatch as a binary tree sorted by number (libseccomp >= 2.5), not a list:
# the same decisions (tests/sandbox/test_seccomp.py runs both), but the kernel loads
# Docker's profile in 1.6 ms instead of 2.6 (it walks the program for each syscall
# number to fill its allow cache) and runs a syscall's check in log(n) tests.
_FLTATR_CTL_OPTIMIZE = 8
_OPTIMIZE_TREE = 2
COMPARE = {  # enum scmp_compare
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}


@dataclass(frozen=True)
class ArgCompare:
    """One argument test: for MASKED_EQ, (arg & value) == value_two."""

    index: int
    op: str
    value: int
    value_two: int = 0


class _Cmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


@functools.cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise SandboxError(
            "seccomp: libseccomp.so.2 is missing (Debian: apt-get install libseccomp2),"
            " or run with --security-opt seccomp=unconfined"
        ) from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_Cmp),
    )
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    return lib


_NR_SCMP_ERROR = -1


class Filter:
    """A libseccomp filter context; use as a context manager (it frees the C memory)."""

    def __init__(self, default_action: int, *, tree: bool = True) -> None:
        self._ctx = _lib().seccomp_init(default_action)
        if not self._ctx:
            raise SandboxError(f"seccomp: bad default action {default_action:#x}")
        self._check(_lib().seccomp_attr_set(self._ctx, _FLTATR_CTL_NNP, 0), "set attribute")
        if tree:  # an older libseccomp (EINVAL) keeps the list: only slower
            _lib().seccomp_attr_set(self._ctx, _FLTATR_CTL_OPTIMIZE, _OPTIMIZE_TREE)

    def __enter__(self) -> Filter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        _lib().seccomp_release(self._ctx)

    @staticmethod
    def _check(ret: int, what: str) -> None:
        if ret < 0:
            raise SandboxError(f"seccomp: {what}: {os.strerror(-ret)}")

    def add_arch(self, name: str) -> bool:
        """Add an architecture by libseccomp's name ("x86", "x32", "arm"...); False when this
        libseccomp does not know it."""
        token = _lib().seccomp_arch_resolve_name(name.encode())
        if token == 0:
            return False
        ret = _lib().seccomp_arch_add(self._ctx, token)
        if ret != -errno.EEXIST:  # the native one is there from the start
            self._check(ret, f"add architecture {name}")
        return True

    def add_rule(self, action: int, syscall: str, args: Sequence[ArgCompare]) -> bool:
        """Add `action` for `syscall` when all of `args` hold; False for a syscall name this
        libseccomp does not know (runc skips those too: a newer profile on an older host)."""
        number = _lib().seccomp_syscall_resolve_name(syscall.encode())
        if number == _NR_SCMP_ERROR:
            return False
        cmps = (_Cmp * max(len(args), 1))()
        for i, a in enumerate(args):
            cmps[i] = _Cmp(a.index, COMPARE[a.op], a.value, a.value_two)
        ret = _lib().seccomp_rule_add_array(self._ctx, action, number, len(args), cmps)
        self._check(ret, f"rule for {syscall}")
        return True

    def export_bpf(self) -> bytes:
        """The program as the kernel takes it (struct sock_filter[])."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            self._check(_lib().seccomp_export_bpf(self._ctx, fd), "export")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)


def loaded_path() -> str | None:
    """The file of the libseccomp this process has loaded (None: not loaded, or no
    /proc): what compiled a program, for seccomp_cache to tell a later one from it."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rstrip("\n").partition("/")[2]
                if "/libseccomp.so" in "/" + path:
                    return "/" + path
    except OSError:
        pass
    return None
