"""Capability names, Docker's default set, and docker's `--cap-add`/`--cap-drop` rules.

Pure values and one read of /proc/sys/kernel/cap_last_cap; confine.py applies them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from builder.errors import UsageError

# <linux/capability.h>, by number.
NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}

# Docker's default set (moby's oci/caps DefaultCapabilities), the 14 a container keeps.
DEFAULT = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)


@functools.cache
def last_cap() -> int:
    """The highest capability number this kernel knows (older kernels know fewer)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return min(int(f.read()), len(NAMES) - 1)
    except (OSError, ValueError):
        return NUMBERS["CAP_AUDIT_READ"]  # 3.16..5.8: what every supported kernel has


def every() -> frozenset[str]:
    """Every capability of this kernel (`--cap-add ALL`, `--security=insecure`)."""
    return frozenset(NAMES[: last_cap() + 1])


def mask(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << NUMBERS[name]
    return bits


def normalize(name: str) -> str:
    """docker's spelling: case-insensitive, CAP_ optional, ALL for all of them."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in NUMBERS:
        raise UsageError(f"unknown capability: {name!r}")
    return full


def tweak(adds: Iterable[str], drops: Iterable[str]) -> frozenset[str]:
    """The set `--cap-add`/`--cap-drop` make of Docker's default, with moby's rules: ALL in
    the adds means every capability but the drops; ALL in the drops means only the adds;
    else the default less the drops plus the adds (an add wins over a drop)."""
    add = {normalize(n) for n in adds}
    drop = {normalize(n) for n in drops}
    if "ALL" in add:
        return every() - drop
    if "ALL" in drop:
        return frozenset(add - {"ALL"})
    return frozenset((DEFAULT - drop) | add)
