"""User-namespace id maps, and the pipe handshake that lets a parent write them.

A process cannot map ids other than its own into a namespace it just entered, so the child
unshares CLONE_NEWUSER, tells its parent, and waits; the parent (still in the outer
namespace) writes /proc/<child>/uid_map and gid_map, then lets the child continue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from builder.errors import SandboxError


@dataclass(frozen=True)
class IdMap:
    """One line of uid_map/gid_map: `inside outside count`."""

    inside: int
    outside: int
    count: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}\n"


# As host root: identity over the whole range, so files the process creates carry the
# same ids on disk (the upper dir becomes a layer as is).
IDENTITY = IdMap(0, 0, 4294967295)


def maps_for_host() -> tuple[IdMap, IdMap, bool]:
    """(uid map, gid map, deny setgroups) for the current host user."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        return IDENTITY, IDENTITY, False
    # Unprivileged: only our own id can be mapped, and setgroups must be denied first.
    return IdMap(0, uid, 1), IdMap(0, gid, 1), True


def write_maps(pid: int) -> None:
    """Write the maps for `pid`, a child that has unshared its user namespace."""
    uid_map, gid_map, deny = maps_for_host()
    base = f"/proc/{pid}"
    try:
        if deny:
            _write(f"{base}/setgroups", "deny")
        _write(f"{base}/uid_map", uid_map.line())
        _write(f"{base}/gid_map", gid_map.line())
    except OSError as err:
        raise SandboxError(f"write id maps of {pid}: {err.strerror}") from None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Handshake:
    """Two pipes between a child that asks for maps and the parent that writes them."""

    ask_r: int
    ask_w: int
    done_r: int
    done_w: int

    @staticmethod
    def new() -> Handshake:
        ask_r, ask_w = os.pipe2(os.O_CLOEXEC)
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        return Handshake(ask_r, ask_w, done_r, done_w)

    def child_side(self) -> None:
        """In the child after fork: keep our ends only."""
        os.close(self.ask_r)
        os.close(self.done_w)

    def parent_side(self) -> None:
        os.close(self.ask_w)
        os.close(self.done_r)

    def ask(self) -> None:
        """Child: we have unshared the user ns; block until the parent wrote the maps."""
        os.write(self.ask_w, b"u")
        os.close(self.ask_w)
        answer = os.read(self.done_r, 1)
        os.close(self.done_r)
        if answer != b"k":
            raise SandboxError("id maps: the parent did not write them")

    def serve(self, pid: int) -> bool:
        """Parent: wait for the child's request and answer it. False if the child died
        (or finished without asking)."""
        try:
            if os.read(self.ask_r, 1) != b"u":
                return False
            write_maps(pid)
            os.write(self.done_w, b"k")
            return True
        finally:
            os.close(self.ask_r)
            os.close(self.done_w)
