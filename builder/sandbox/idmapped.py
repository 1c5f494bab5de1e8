"""Idmapped mounts: how `--userns=auto` keeps layers byte for byte what they are as root.

The container's root is host uid B (an IdRange from subids). The store's files carry the
image's own ids (0, 1000...), shared by every build. Each layer dir, and the dir holding the
upper and work dirs, is given to overlayfs as an idmapped mount (open_tree + mount_setattr)
through a user namespace that maps 0..65535 to B..B+65535: the container sees its files
owned as in the image, and what it writes lands on disk with the image's ids, so the upper
dir becomes a layer exactly as without the range. Nothing on disk is ever chowned.

overlayfs does its own work in the upper and work dirs (whiteouts, copy-up, its work/ dir)
with the credentials of whoever mounted it. As host root (fsuid 0) that id cannot be
written through the idmapped upper (EOVERFLOW, and the mount goes read-only): the
supervisor mounts with fsuid/fsgid B, which the mapping writes as 0, the owner a
whiteout has without the range, and all its capabilities restored.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox.idmap import write_maps_of
from builder.sandbox.subids import IdRange
from builder.sandbox.syscalls import (
    CLONE_NEWUSER,
    SyscallError,
    capset,
    get_pdeathsig,
    open_tree_clone,
    set_fsids,
    set_idmap,
    set_pdeathsig,
    unshare,
)


@dataclass(frozen=True)
class Idmapping:
    """A user namespace (an fd, which keeps it alive) mapping container ids to `ids`."""

    userns_fd: int
    ids: IdRange

    @staticmethod
    def create(ids: IdRange) -> Idmapping:
        """A fresh user namespace with the range's maps. Must run before this process
        unshares a pid namespace (its helper child would become that namespace's init)."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # lives only until the namespace has its maps and an fd names it
            code = 1
            try:
                os.close(ready_r)
                os.close(hold_w)  # or our read below would never see EOF
                unshare(CLONE_NEWUSER)
                os.write(ready_w, b"u")
                os.read(hold_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(hold_r)
        try:
            if os.read(ready_r, 1) != b"u":
                raise SandboxError("--userns=auto: the id-map helper failed")
            write_maps_of(pid, ids.uid_maps(), ids.gid_maps(), deny=False)
            fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(ready_r)
            os.close(hold_w)  # the helper exits
            os.waitpid(pid, 0)
        return Idmapping(fd, ids)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.userns_fd)

    def clone(self, path: str, recursive: bool = False) -> int:
        """A detached idmapped copy of the mount at `path` (an fd)."""
        fd = open_tree_clone(path, recursive)
        try:
            set_idmap(fd, self.userns_fd, recursive)
        except SyscallError as err:
            os.close(fd)
            raise SandboxError(
                f"--userns=auto: {path}: no idmapped mount ({err}); its file system (or"
                " this kernel, before 5.19) cannot map ids"
            ) from None
        return fd

    @contextlib.contextmanager
    def as_creator(self) -> Iterator[None]:
        """Act as the container's root for file ownership (fsuid/fsgid), with every
        capability we had: what an overlay mount made meanwhile remembers."""
        caps = _own_caps()
        deathsig, parent = get_pdeathsig(), os.getppid()
        set_fsids(self.ids.uid, self.ids.gid)
        try:
            capset(*caps)  # a change of fsuid from 0 drops the file capabilities
            yield
        finally:
            set_fsids(0, 0)
            capset(*caps)
            # A change of fsuid also clears the parent-death signal: without it, a killed
            # caller would leave the sandbox (and its range) behind.
            if deathsig:
                set_pdeathsig(deathsig)
                if os.getppid() != parent:  # the parent died while it was off
                    os.kill(os.getpid(), deathsig)


def _own_caps() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread."""
    sets = {}
    with open("/proc/thread-self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapPrm", "CapInh"):
                sets[key] = int(value, 16)
    return sets["CapEff"], sets["CapPrm"], sets["CapInh"]
