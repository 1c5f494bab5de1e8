"""Resource limits of a sandbox, as docker's flags spell them, and the OOM outcome.

A plain value module (no I/O): the CLI parses flags into `Limits`, the engine and the
runtime hand them to the sandbox, which applies them through cgroups (`sandbox/cgroups`).
"""

from __future__ import annotations

import re

from builder.errors import SandboxError, UsageError
from builder.record import dataclass

# A build's RUN steps get this pids limit unless the flag or the config file says otherwise:
# a fork bomb in a RUN ends the step and leaves the machine alone.
DEFAULT_BUILD_PIDS_LIMIT = 4096
# docker's floor: below it the sandbox's own processes would be OOM-killed before the
# command starts.
MIN_MEMORY = 6 << 20

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# docker's units.RAMInBytes: a number (a fraction allowed), a binary unit, an optional
# "i"/"b" ("64m", "64mb", "64MiB", "1.5g", "1048576").
_BYTES = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """What `--memory`, `--memory-swap`, `--cpus` and `--pids-limit` asked for; None is no
    limit. `memory_swap` is docker's: memory plus swap, -1 for unlimited swap."""

    memory: int | None = None
    memory_swap: int | None = None
    cpus: float | None = None
    pids: int | None = None
    # Where the container's cgroups go, relative to each hierarchy's root (docker's
    # --cgroup-parent; its cgroupfs driver's default is /docker).
    parent: str = "/builder"
    # The build's default pids limit is best effort: where no cgroup can be made (a user
    # without a delegated cgroup), steps run without it. A limit the user asked for is not.
    best_effort: bool = False

    def __post_init__(self) -> None:
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise UsageError("--memory: the minimum memory limit allowed is 6MB")
        if self.memory_swap is not None and self.memory_swap != -1:
            if self.memory is None:
                raise UsageError("--memory-swap needs --memory as well")
            if self.memory_swap < self.memory:
                raise UsageError("--memory-swap must be at least --memory (it is memory plus swap)")

    def any(self) -> bool:
        return any(v is not None for v in (self.memory, self.memory_swap, self.cpus, self.pids))

    def swap_total(self) -> int | None:
        """memory+swap to write, docker's way: unset with --memory means twice the memory;
        -1 means unlimited (None)."""
        if self.memory is None or self.memory_swap == -1:
            return None
        return self.memory_swap if self.memory_swap is not None else 2 * self.memory


class OutOfMemory(SandboxError):
    """The kernel's OOM killer stopped a process of the sandbox at its memory limit."""

    def __init__(self, status: int, limit: int | None) -> None:
        self.status = status  # what the process exited with (137 for SIGKILL)
        self.limit = limit
        super().__init__(f"killed: out of memory{limit_words(limit)}")


def limit_words(limit: int | None) -> str:
    return "" if limit is None else f" (limit {human_bytes(limit)})"


def human_bytes(n: int) -> str:
    """64 MiB, 1.5 GiB, 100 B."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def parse_bytes(text: str, flag: str) -> int:
    """docker's RAMInBytes: '64m' -> 67108864."""
    m = _BYTES.match(text.strip())
    if m is None:
        raise UsageError(f"{flag} {text}: invalid size (a number and a unit: b, k, m, g)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_memory_swap(text: str) -> int:
    return -1 if text.strip() == "-1" else parse_bytes(text, "--memory-swap")


def parse_cpus(text: str) -> float:
    try:
        cpus = float(text)
    except ValueError:
        raise UsageError(f"--cpus {text}: not a number") from None
    if not cpus > 0 or cpus > 1 << 20:
        raise UsageError(f"--cpus {text}: must be a positive number of CPUs")
    return cpus


def parse_pids(value: int) -> int | None:
    """docker: 0 or -1 is unlimited."""
    if value < -1:
        raise UsageError(f"--pids-limit {value}: must be a positive number, or -1 for no limit")
    return None if value in (0, -1) else value
