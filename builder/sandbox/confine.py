"""Capabilities, seccomp and no_new_privs for the container's process: prepared in the
caller (the seccomp program is compiled there, once), applied by pid 1 just before exec.

The order is runc's, and each step needs the one before:
  before_user  (still root with every capability in the container's user namespace)
      no_new_privs if asked;
      without no_new_privs, the seccomp filter now: loading one needs CAP_SYS_ADMIN;
      the bounding set cut to the kept capabilities (needs CAP_SETPCAP);
  become the user (setgroups/setgid/setuid: allowed by the profile; a non-root uid
      loses every capability here, as in Docker, and gets them back only from a setuid
      or file-capability binary, within the bounding set)
  after_user
      ambient cleared; permitted and effective cut to the kept set, inheritable emptied;
      with no_new_privs, the seccomp filter last (fewer of our syscalls go through it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from builder.record import dataclass
from builder.sandbox import capabilities, seccomp_cache
from builder.sandbox.security import UNCONFINED, Security
from builder.sandbox.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_NO_NEW_PRIVS,
    SyscallError,
    capset,
    load_seccomp_filter,
    prctl,
)


@dataclass(frozen=True)
class Confinement:
    keep: int  # capability bit mask
    last_cap: int
    program: bytes | None  # the seccomp BPF program; None: unconfined
    no_new_privs: bool


def prepare(security: Security, cache: Path | None = None) -> Confinement:
    """Resolve `security` for this kernel; compile its seccomp profile (in the caller),
    or take the program compiled before from `cache` (seccomp_cache.py)."""
    caps = capabilities.every() if security.capabilities is None else security.capabilities
    if security.seccomp == UNCONFINED:
        program = None
    else:
        program = seccomp_cache.program(security.seccomp, caps, cache)
    last = capabilities.last_cap()
    # A capability newer than this kernel cannot be held: capset would refuse the whole set.
    keep = capabilities.mask(caps) & ((1 << (last + 1)) - 1)
    return Confinement(keep, last, program, security.no_new_privileges)


def before_user(c: Confinement) -> None:
    if c.no_new_privs:
        prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    elif c.program is not None:
        load_seccomp_filter(c.program)
    for number in range(c.last_cap + 1):
        if not c.keep >> number & 1:
            prctl(PR_CAPBSET_DROP, number, f"PR_CAPBSET_DROP {capabilities.NAMES[number]}")


def after_user(c: Confinement) -> None:
    with contextlib.suppress(SyscallError):  # EINVAL before Linux 4.3: no ambient set at all
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL")
    # setuid to a non-root uid has emptied permitted and effective; root keeps the kept set.
    kept = c.keep if os.geteuid() == 0 else 0
    capset(kept, kept, 0)
    if c.no_new_privs and c.program is not None:
        load_seccomp_filter(c.program)
