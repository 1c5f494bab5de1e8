"""Rootless: a non-root user's builder runs inside a user namespace of its own.

Before a non-root user's command touches its store, the process enters a new user
namespace in which it is uid 0 and which maps, as podman and buildah do, uid 0 to the user
and uids 1..N to the user's subordinate range from /etc/subuid (gids likewise from
/etc/subgid), written by the setuid helpers newuidmap/newgidmap (Debian's `uidmap`).
Inside, the store, the layer unpacker and the sandbox work as they do for root: chown to
any mapped id works, so ownership inside images is kept, and the overlay mounts use
`userxattr` (the kernel allows no trusted.* xattrs in a user namespace).

Without a subordinate range (or without newuidmap), only the user's own id is mapped, as
uid 0: an image's files owned by other ids cannot be unpacked or written. The user is told
so, once per command.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys

from builder.errors import SandboxError
from builder.sandbox.idmap import IdMap
from builder.sandbox.syscalls import CLONE_NEWUSER, unshare

SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


def subordinate_ranges(path: str, name: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges of `path` (/etc/subuid's format) for user NAME or UID."""
    ranges: list[tuple[int, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                owner, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                wanted = owner in (name, str(uid)) and start.isdigit() and count.isdigit()
                if wanted and int(count) > 0:
                    ranges.append((int(start), int(count)))
    except OSError:
        pass
    return ranges


def planned_maps(
    uid: int, gid: int, name: str
) -> tuple[tuple[IdMap, ...], tuple[IdMap, ...], str | None]:
    """(uid maps, gid maps, a note when ownership cannot be kept)."""
    subuids = subordinate_ranges(SUBUID, name, uid)
    subgids = subordinate_ranges(SUBGID, name, uid)
    helpers = shutil.which("newuidmap") and shutil.which("newgidmap")
    if subuids and subgids and helpers:
        return _stacked(uid, subuids), _stacked(gid, subgids), None
    missing = (
        "the newuidmap/newgidmap helpers (Debian package uidmap)"
        if not helpers
        else f"a range for {name} in {SUBUID} and {SUBGID}"
    )
    note = (
        f"note: rootless without {missing}: only your own id is mapped (as root) in images;"
        " files owned by other users cannot be unpacked or written"
    )
    return (IdMap(0, uid, 1),), (IdMap(0, gid, 1),), note


def _stacked(own: int, ranges: list[tuple[int, int]]) -> tuple[IdMap, ...]:
    maps = [IdMap(0, own, 1)]
    inside = 1
    for start, count in ranges:
        maps.append(IdMap(inside, start, count))
        inside += count
    return tuple(maps)


def enter() -> None:
    """As a non-root user, move this process into a new user namespace where it is root.
    As root (on the host, or already inside), do nothing. Must run single-threaded."""
    if os.geteuid() == 0:
        return
    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    uid_maps, gid_maps, note = planned_maps(uid, gid, name)
    if note is not None:
        print(f"builder: {note}", file=sys.stderr, flush=True)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    me = os.getpid()
    helper = os.fork()
    if helper == 0:  # stays in our namespace, to write the maps of the new one
        os.close(go_w)
        os.close(done_r)
        answer = b"k"
        try:
            if os.read(go_r, 1) != b"u":
                os._exit(1)
            _write_maps(me, uid_maps, gid_maps, subordinate=note is None)
        except BaseException as err:  # reported to the parent, which raises
            answer = b"E" + str(err).encode(errors="replace")[:1000]
        finally:
            os.write(done_w, answer)
            os._exit(0)
    os.close(go_r)
    os.close(done_w)
    try:
        unshare(CLONE_NEWUSER)
        os.write(go_w, b"u")
        answer = os.read(done_r, 1100)
    finally:
        os.close(go_w)
        os.close(done_r)
        os.waitpid(helper, 0)
    if answer != b"k":
        raise SandboxError(f"rootless: {answer[1:].decode(errors='replace') or 'no id maps'}")


def _write_maps(
    pid: int, uid_maps: tuple[IdMap, ...], gid_maps: tuple[IdMap, ...], subordinate: bool
) -> None:
    if subordinate:  # the setuid helpers check the ranges against /etc/subuid and write
        for tool, maps in (("newuidmap", uid_maps), ("newgidmap", gid_maps)):
            args = [str(v) for m in maps for v in (m.inside, m.outside, m.count)]
            done = subprocess.run(
                [tool, str(pid), *args], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise SandboxError(f"{tool}: {done.stderr.strip() or done.returncode}")
        return
    with open(f"/proc/{pid}/setgroups", "w", encoding="ascii") as f:
        f.write("deny")
    for which, maps in (("uid", uid_maps), ("gid", gid_maps)):
        with open(f"/proc/{pid}/{which}_map", "w", encoding="ascii") as f:
            f.write("".join(m.line() for m in maps))
