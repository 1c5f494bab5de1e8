"""Docker's `--user` syntax resolved against the ROOT's /etc/passwd and /etc/group.

Read after pivot_root, so the names are the image's, never the host's. The files are
untrusted: malformed lines are skipped, never fatal. The readers are also what COPY
--chown resolves names with (it runs in the image's root too).
"""

from __future__ import annotations

import os

from builder.record import dataclass
from builder.sandbox.spec import ProcessStartError


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


_LIMIT = 1 << 22  # an untrusted file: what we read of it


def _read_lines(path: str) -> list[list[str]]:
    # Read for its size: read(4 MiB) maps a 4 MiB buffer (and decoding another), which in
    # pid 1, a fresh fork, costs more than the parsing.
    try:
        with open(path, "rb") as f:
            data = f.read(min(os.fstat(f.fileno()).st_size + 1, _LIMIT))
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def read_passwd(path: str = "/etc/passwd") -> list[PasswdEntry]:
    out = []
    for f in _read_lines(path):
        if len(f) >= 6 and f[2].isdigit() and f[3].isdigit():
            out.append(PasswdEntry(f[0], int(f[2]), int(f[3]), f[5] or "/"))
    return out


def read_groups(path: str = "/etc/group") -> list[GroupEntry]:
    out = []
    for f in _read_lines(path):
        if len(f) >= 4 and f[2].isdigit():
            members = tuple(m.strip() for m in f[3].split(",") if m.strip())
            out.append(GroupEntry(f[0], int(f[2]), members))
    return out


def _id(text: str) -> int | None:
    if text.isdigit() and int(text) < 2**32 - 1:
        return int(text)
    return None


def resolve(user: str, etc: str = "/etc") -> Credentials:
    """ "" -> 0:0; "name", "uid", "uid:gid", "name:group" (any mix), like docker."""
    name, _, group = user.partition(":")
    if not name:
        if group:
            raise ProcessStartError(f"user {user!r}: no user before ':'")
        name = "0"
    users = read_passwd(f"{etc}/passwd")
    uid = _id(name)
    entry = next((u for u in users if (u.uid == uid if uid is not None else u.name == name)), None)
    if entry is None and uid is None:
        # moby/sys/user's words, which BuildKit reports as they are
        raise ProcessStartError(f"unable to find user {name}: no matching entries in passwd file")
    uid = entry.uid if entry else uid
    assert uid is not None
    gid = entry.gid if entry else 0
    home = entry.home if entry else "/"
    groups = read_groups(f"{etc}/group")
    if group:
        gid_given = _id(group)
        if gid_given is None:
            match = next((g for g in groups if g.name == group), None)
            if match is None:
                raise ProcessStartError(
                    f"unable to find group {group}: no matching entries in group file"
                )
            gid_given = match.gid
        gid = gid_given
    supplementary = [gid]
    if entry is not None and not group:
        # Docker adds the groups that list the user, only when no group was given.
        supplementary += [g.gid for g in groups if entry.name in g.members and g.gid != gid]
    return Credentials(uid, gid, tuple(supplementary), home)
