"""User-namespace id maps, and the pipe handshake that lets a parent write them.

A process cannot map ids other than its own into a namespace it just entered, so the child
unshares CLONE_NEWUSER, tells its parent, and waits; the parent (still in the outer
namespace) writes /proc/<child>/uid_map and gid_map, then lets the child continue.
"""

from __future__ import annotations

import os

from builder.errors import SandboxError
from builder.record import dataclass


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


def own_maps(which: str = "uid") -> tuple[IdMap, ...]:
    """This process's user namespace's uid_map (or gid_map)."""
    with open(f"/proc/self/{which}_map", encoding="ascii") as f:
        return tuple(IdMap(*map(int, line.split())) for line in f if line.strip())


def in_initial_user_namespace() -> bool:
    """True unless we run in a user namespace (rootless builder runs in one of its own)."""
    return own_maps() == (IDENTITY,)


def maps_for_host() -> tuple[tuple[IdMap, ...], tuple[IdMap, ...], bool]:
    """(uid maps, gid maps, deny setgroups) for a namespace made by the current user."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        # Identity over what we have: all ids as host root; as root of a rootless
        # namespace, the ids it maps (0 and the user's subordinate range).
        if in_initial_user_namespace():
            return (IDENTITY,), (IDENTITY,), False
        return _identity_of(own_maps("uid")), _identity_of(own_maps("gid")), False
    # Unprivileged: only our own id can be mapped, and setgroups must be denied first.
    return (IdMap(0, uid, 1),), (IdMap(0, gid, 1),), True


def _identity_of(maps: tuple[IdMap, ...]) -> tuple[IdMap, ...]:
    return tuple(IdMap(m.inside, m.inside, m.count) for m in maps)


# (uid maps, gid maps): a namespace's ids when not the identity (--userns=auto's range).
Maps = tuple[tuple[IdMap, ...], tuple[IdMap, ...]]


def write_maps(pid: int, maps: Maps | None = None) -> None:
    """Write the maps for `pid`, a child that has unshared its user namespace: `maps`, or
    the identity over what we have (maps_for_host)."""
    if maps is None:
        write_maps_of(pid, *maps_for_host())
    else:
        write_maps_of(pid, *maps, deny=False)


def write_maps_of(
    pid: int, uid_maps: tuple[IdMap, ...], gid_maps: tuple[IdMap, ...], deny: bool
) -> None:
    base = f"/proc/{pid}"
    try:
        if deny:
            _write(f"{base}/setgroups", "deny")
        _write(f"{base}/uid_map", "".join(m.line() for m in uid_maps))
        _write(f"{base}/gid_map", "".join(m.line() for m in gid_maps))
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

    def serve(self, pid: int, maps: Maps | None = None) -> bool:
        """Parent: wait for the child's request and answer it (with `maps`, else the
        identity). False if the child died (or finished without asking)."""
        try:
            if os.read(self.ask_r, 1) != b"u":
                return False
            write_maps(pid, maps)
            os.write(self.done_w, b"k")
            return True
        finally:
            os.close(self.ask_r)
            os.close(self.done_w)
