"""What a sandboxed process may do beyond its namespaces: a value, set by the caller.

The default is Docker's: its 14 capabilities, its seccomp profile, no_new_privs off (so a
setuid `su` works). `INSECURE` is what `RUN --security=insecure` asks for: every capability
and no seccomp filter (the namespaces, masks and read-only /proc and /sys stay).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from builder.errors import UsageError
from builder.record import dataclass
from builder.sandbox.capabilities import DEFAULT, tweak

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


DOCKER_DEFAULT: Final = Security()
INSECURE: Final = Security(capabilities=None, seccomp=UNCONFINED)


def from_flags(
    cap_add: Sequence[str] = (), cap_drop: Sequence[str] = (), security_opt: Sequence[str] = ()
) -> Security:
    """`docker run`'s --cap-add, --cap-drop and --security-opt (seccomp=unconfined,
    seccomp=builtin, seccomp=PROFILE.json, no-new-privileges[=true|false]); UsageError on
    what we do not support (apparmor=, label=, systempaths=: no meaning here)."""
    profile = DEFAULT_PROFILE
    nnp = False
    for opt in security_opt:
        # docker still takes the old "key:value" spelling
        key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false") or (sep and not value):
                raise UsageError(f"--security-opt {opt}: want no-new-privileges[=true|false]")
            nnp = value != "false"
        elif key == "seccomp" and value in ("builtin", UNCONFINED):
            profile = DEFAULT_PROFILE if value == "builtin" else UNCONFINED  # builtin: docker 25
        elif key == "seccomp" and value:
            from builder.sandbox import seccomp  # checked now, not in the sandbox; ctypes

            seccomp.read_profile(value)
            profile = os.path.abspath(value)  # a file named "default" is a file
        else:
            raise UsageError(
                f"--security-opt {opt}: not supported"
                " (seccomp=unconfined|builtin|PROFILE.json, no-new-privileges)"
            )
    caps = tweak(cap_add, cap_drop) if cap_add or cap_drop else DEFAULT
    return Security(capabilities=caps, seccomp=profile, no_new_privileges=nnp)
