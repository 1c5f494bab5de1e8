"""`--userns=auto`: a range of host ids of its own for each container, leased from the
subordinate ranges /etc/subuid and /etc/subgid give the user `containers` (podman's
choice for root's automatic namespaces, so one entry serves both tools).

The ranges are cut into slots of SIZE ids (container root is the slot's first id, its uid
65535 the last). A slot is leased by holding an exclusive flock on its record file in
LEASE_DIR: the kernel drops the lock when the holder exits, however it exits, so a killed
CLI leaves no slot taken (a stale record file is only a name, locked again by the next
lease). Two builds or runs at once (any store: the host's ids are one pool) never share a
slot. The directory is under /run, a tmpfs: a lease does not outlive a reboot, nor should
its record.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox.idmap import IdMap
from builder.sandbox.rootless import SUBGID, SUBUID, subordinate_ranges

OWNER = "containers"
SIZE = 65536
LEASE_DIR = "/run/builder/subids"


@dataclass(frozen=True)
class IdRange:
    """Container ids 0..count-1 are host uids uid.. and gids gid.. ."""

    uid: int
    gid: int
    count: int = SIZE

    def uid_maps(self) -> tuple[IdMap, ...]:
        return (IdMap(0, self.uid, self.count),)

    def gid_maps(self) -> tuple[IdMap, ...]:
        return (IdMap(0, self.gid, self.count),)

    @property
    def record(self) -> str:
        return f"{self.uid}-{self.gid}.lock"


class Lease:
    """A slot held by this process (and its forks, which share the lock) until released."""

    def __init__(self, ids: IdRange, fd: int, path: str) -> None:
        self.ids, self._fd, self._path = ids, fd, path

    def release(self) -> None:
        if self._fd < 0:
            return
        # Unlink while still locked: a leaser that opened this record meanwhile finds its
        # inode gone after locking it, and opens the name again.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        os.close(self._fd)
        self._fd = -1


def slots() -> list[IdRange]:
    """Every slot the subordinate ranges of OWNER hold, in file order."""
    uids = _cut(subordinate_ranges(SUBUID, OWNER, -1))
    gids = _cut(subordinate_ranges(SUBGID, OWNER, -1))
    return [IdRange(u, g) for u, g in zip(uids, gids, strict=False)]


def _cut(ranges: list[tuple[int, int]]) -> list[int]:
    return [start + i * SIZE for start, count in ranges for i in range(count // SIZE)]


def lease(lease_dir: str = LEASE_DIR) -> Lease:
    """A free slot, locked for us; SandboxError when there is none."""
    candidates = slots()
    if not candidates:
        raise SandboxError(
            f"--userns=auto: no range of {SIZE} ids for the user {OWNER} in {SUBUID} and"
            f" {SUBGID} (add one, as podman's: {OWNER}:2147483647:2147483648)"
        )
    os.makedirs(lease_dir, 0o700, exist_ok=True)
    for ids in candidates:
        held = _try(f"{lease_dir}/{ids.record}", ids)
        if held is not None:
            return held
    raise SandboxError(
        f"--userns=auto: all {len(candidates)} ranges of {OWNER} in {SUBUID} are in use"
    )


def _try(path: str, ids: IdRange) -> Lease | None:
    for _ in range(5):  # only a release racing us makes this loop
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for a human: who holds it
            return Lease(ids, fd, path)
        os.close(fd)  # released and unlinked between our open and our lock
    return None


def leased(lease_dir: str = LEASE_DIR) -> list[IdRange]:
    """The slots some live process holds now (a record whose lock is free is stale)."""
    held = []
    for ids in slots():
        path = f"{lease_dir}/{ids.record}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(ids)
        finally:
            os.close(fd)
    return held
