"""Cleanup the caller hands to the sandbox's supervisor, off the caller's critical path.

`builder run --rm` ends with its container's dirs removed. On this machine's ext4 (online
discard) each unlink or rmdir costs 0.2-2 ms: the dirs of an empty container (its records,
the overlay's upper and work trees, the state dir) took 5-10 ms, all paid by the caller,
whose exit is what the user waits for. Instead, once pid 1 has ended and the root is
unmounted (the supervisor said `C`), the caller moves what is to go out of sight (`move`: a
rename, into the store's scratch dir under a name the supervisor owns) and says so on a
pipe, and the supervisor, which has not exited yet, removes it (`remove`) while the caller
goes on. Whoever dies first, nothing is lost: the caller's death closes the pipe (the
supervisor then exits, and the caller's own cleanup never ran either: the scratch sweep's
case), and a supervisor killed halfway leaves a scratch entry whose owner is gone, which the
next sweep removes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from builder.record import dataclass
from builder.sandbox.syscalls import MNT_DETACH, SyscallError, set_pdeathsig, umount2


@dataclass(frozen=True)
class Handoff:
    # In the caller, given the supervisor's pid, once the root is unmounted: True if what
    # is to go was moved where `remove` finds it (the supervisor then removes it).
    move: Callable[[int], bool]
    # In the supervisor, once told the move was done: remove it (errors are ignored).
    remove: Callable[[], object]


def hand_over(handoff: Handoff, write_fd: int, supervisor: int) -> bool:
    """Caller's side: move, and tell the supervisor whether to remove; closes `write_fd`."""
    moved = False
    try:
        moved = handoff.move(supervisor)
    finally:
        with contextlib.suppress(OSError):
            os.write(write_fd, b"1" if moved else b"0")
        os.close(write_fd)
    return moved


def take_over(handoff: Handoff, read_fd: int, state: str) -> None:
    """Supervisor's side, after it said its status: wait for the caller's word and remove
    what it moved. The parent-death signal goes first: the caller may exit as soon as it
    has written, and our work must outlive it (its death before writing is EOF here)."""
    set_pdeathsig(0)
    try:
        said = os.read(read_fd, 1)
    except OSError:
        said = b""
    os.close(read_fd)
    if said != b"1":
        return
    # The state dir's tmpfs is mounted in our namespace only: off it, so that it can go.
    with contextlib.suppress(SyscallError):
        umount2(state, MNT_DETACH)
    with contextlib.suppress(Exception):
        handoff.remove()
