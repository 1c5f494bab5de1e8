"""What a sandboxed process may do beyond its namespaces: a value, set by the caller.

The default is Docker's: its 14 capabilities, its seccomp profile, no_new_privs off (so a
setuid `su` works). `INSECURE` is what `RUN --security=insecure` asks for: every capability
and no seccomp filter (the namespaces, masks and read-only /proc and /sys stay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from builder.sandbox.capabilities import DEFAULT

UNCONFINED: Final = "unconfined"
DEFAULT_PROFILE: Final = "default"


@dataclass(frozen=True)
class Security:
    # The bounding, permitted and effective sets of a root process (a non-root one starts
    # with none, as in Docker); None is every capability the kernel has. Inheritable and
    # ambient are always empty (Docker's since CVE-2022-24769).
    capabilities: frozenset[str] | None = DEFAULT
    # "default" (Docker's profile, shipped as seccomp_default.json), "unconfined", or the
    # path of a profile in Docker's JSON format.
    seccomp: str = DEFAULT_PROFILE
    no_new_privileges: bool = False


INSECURE: Final = Security(capabilities=None, seccomp=UNCONFINED)
