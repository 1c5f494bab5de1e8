"""Whether the warm server's code on disk is still the code it loaded (builder/cli/server.py).

The server refuses a call once a file of the builder package changed since it started
(the call then runs one-shot, with the new code). Stat-ing each of the package's ~200 files
before every call cost ~2.5 ms of each call. Instead, an inotify watch on each directory
of the package (not `__pycache__`, whose bytecode the interpreter rewrites) queues an event
for any change to a file or a directory entry there, so the check is one read of the queue.
The watches are made before the package's modules are imported, so a change during the
server's start counts too. Without inotify (its limits reached: ENOSPC, EMFILE) each check
compares every file's (mtime, size) with the snapshot taken at start, as before.
"""

from __future__ import annotations

import contextlib
import os
import struct

from builder.cli import client
from builder.sandbox.syscalls import SyscallError, inotify_add_watch, inotify_init1

# A file written, chmod/touched, closed after writing, renamed away or in, created, removed;
# the watched directory itself removed or renamed.
_MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_IGNORED_NAMES = (b"__pycache__",)
_OVERFLOW = 0x4000  # IN_Q_OVERFLOW: events were lost


def code_files() -> dict[str, tuple[int, int]]:
    """Every file of the package with its (mtime_ns, size): a changed, added or removed
    file means this server's code is not the code on disk."""
    found = {}
    for folder, dirs, files in os.walk(client.package_dir()):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                st = os.stat(path)
                found[path] = (st.st_mtime_ns, st.st_size)
    return found


class CodeWatch:
    """Made before the imports; `changed()` before each call, True from the first change on."""

    def __init__(self) -> None:
        self.fd = _watch(client.package_dir())
        self.files = code_files() if self.fd < 0 else {}  # the fallback's snapshot
        self.stale = False

    def changed(self) -> bool:
        if not self.stale:
            self.stale = self._queued() if self.fd >= 0 else code_files() != self.files
        return self.stale

    def _queued(self) -> bool:
        """Whether the queue holds an event that is not about a __pycache__ entry."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return False
            offset = 0
            while offset < len(data):
                _, mask, _, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0")
                offset += _EVENT.size + size
                if mask & _OVERFLOW or name not in _IGNORED_NAMES:
                    return True


def _watch(root: str) -> int:
    """An inotify fd watching every directory under root but __pycache__; -1: no inotify."""
    try:
        fd = inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)  # IN_NONBLOCK, IN_CLOEXEC
    except SyscallError:
        return -1
    try:
        for folder, dirs, _ in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            inotify_add_watch(fd, folder, _MASK)
    except SyscallError:
        os.close(fd)  # a directory without a watch would go unseen: stat instead
        return -1
    return fd
