"""Seccomp profiles in Docker's JSON format: read, resolved for this host and a capability
set (moby's rules), and compiled to a BPF program through libseccomp.

Docker's default profile ships as `seccomp_default.json`, in Docker's own format (names
sorted, one a line); `scripts/seccomp_diff.py` compares it with moby's
profiles/seccomp/default.json by meaning and lists what changed upstream.
Resolution follows moby's setupSeccomp: a rule whose `excludes` matches (an arch, a
capability in the set, a kernel at least minKernel) is dropped, and so is one whose
`includes` does not fully match. Compilation follows runc: unknown syscall names are
skipped, a rule whose action is the default is skipped, and args on distinct indexes are
ANDed while a repeated index makes one rule per arg (ORed).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.errors import UsageError
from builder.record import dataclass
from builder.sandbox import libseccomp
from builder.sandbox.libseccomp import ArgCompare
from builder.sandbox.seccomp_cache import DEFAULT_FILE

_EPERM = 1
_ACTIONS = {
    "SCMP_ACT_KILL": libseccomp.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": libseccomp.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": libseccomp.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": libseccomp.ACT_TRAP,
    "SCMP_ACT_ERRNO": libseccomp.ACT_ERRNO,
    "SCMP_ACT_TRACE": libseccomp.ACT_TRACE,
    "SCMP_ACT_LOG": libseccomp.ACT_LOG,
    "SCMP_ACT_ALLOW": libseccomp.ACT_ALLOW,
}
# os.uname().machine -> (Docker's arch name in includes/excludes, libseccomp's arch name).
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}


@dataclass(frozen=True)
class Condition:
    """A rule's `includes` or `excludes`."""

    arches: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: int  # with the errno folded in
    args: tuple[ArgCompare, ...] = ()
    includes: Condition = Condition()
    excludes: Condition = Condition()


@dataclass(frozen=True)
class Profile:
    default_action: int
    architectures: tuple[str, ...]  # the old format's flat list
    arch_map: tuple[tuple[str, tuple[str, ...]], ...]  # native -> its sub-architectures
    rules: tuple[Rule, ...]


def read_profile(path: str | Path) -> Profile:
    """A profile file in Docker's format; UsageError naming the file if it is not one."""
    try:
        text = Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"seccomp profile {path}: {err.strerror or err}") from None
    return parse_text(text, path)


def parse_text(text: bytes, path: str | Path) -> Profile:
    """The profile in `text` (read from `path`, named in the UsageError if it is not one)."""
    try:
        return parse_profile(json.loads(text.decode("utf-8")))
    except (ValueError, TypeError, KeyError) as err:  # UnicodeDecodeError is a ValueError
        raise UsageError(f"seccomp profile {path}: {err}") from None


@functools.cache
def default_profile() -> Profile:
    return read_profile(DEFAULT_FILE)


def parse_profile(data: Any) -> Profile:
    """Docker's profile (moby's profiles/seccomp Seccomp type) as a value. Raises ValueError
    (TypeError, KeyError) on what Docker would refuse or we cannot honour."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("listenerPath") or data.get("flags"):
        raise ValueError("listenerPath and flags are not supported")
    if data.get("architectures") and data.get("archMap"):
        raise ValueError("both 'architectures' and 'archMap' are given")
    default = _action(data.get("defaultAction", ""), data.get("defaultErrnoRet"))
    arch_map = tuple(
        (str(a["architecture"]), tuple(str(s) for s in a.get("subArchitectures") or ()))
        for a in _list(data.get("archMap"))
    )
    rules = tuple(_rule(item) for item in _list(data.get("syscalls")))
    return Profile(
        default, tuple(str(a) for a in _list(data.get("architectures"))), arch_map, rules
    )


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {json.dumps(value)[:40]}")
    return value


def _action(name: Any, errno_ret: Any) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise ValueError("SCMP_ACT_NOTIFY is not supported")
    if name not in _ACTIONS:
        raise ValueError(f"unknown action {name!r}")
    action = _ACTIONS[name]
    if action in (libseccomp.ACT_ERRNO, libseccomp.ACT_TRACE):
        code = _EPERM if errno_ret is None and action == libseccomp.ACT_ERRNO else errno_ret or 0
        if not isinstance(code, int) or not 0 <= code <= 0xFFFF:
            raise ValueError(f"bad errnoRet {errno_ret!r}")
        action |= code
    return action


def _rule(item: Mapping[str, Any]) -> Rule:
    if item.get("name") and item.get("names"):
        raise ValueError("both 'name' and 'names' are given")
    names = tuple(str(n) for n in (_list(item.get("names")) or [item["name"]]))
    args = tuple(
        ArgCompare(
            _uint(a["index"], 5),
            _op(a["op"]),
            _uint(a["value"], 2**64 - 1),
            _uint(a.get("valueTwo", 0), 2**64 - 1),
        )
        for a in _list(item.get("args"))
    )
    return Rule(
        names,
        _action(item.get("action"), item.get("errnoRet")),
        args,
        _condition(item.get("includes")),
        _condition(item.get("excludes")),
    )


def _uint(value: Any, top: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise ValueError(f"bad number {value!r}")
    return value


def _op(name: Any) -> str:
    if name not in libseccomp.COMPARE:
        raise ValueError(f"unknown operator {name!r}")
    return str(name)


def _condition(value: Any) -> Condition:
    if not value:
        return Condition()
    kernel = value.get("minKernel")
    return Condition(
        tuple(str(a) for a in _list(value.get("arches"))),
        tuple(str(c) for c in _list(value.get("caps"))),
        _kernel_version(kernel) if kernel else None,
    )


def _kernel_version(text: str) -> tuple[int, int]:
    major, _, rest = str(text).partition(".")
    minor = rest.split(".")[0].split("-")[0]
    return int(major), int(minor or 0)


# ---- resolution and compilation ------------------------------------------------------


def _applies(rule: Rule, arch: str, caps: frozenset[str], kernel: tuple[int, int]) -> bool:
    ex, inc = rule.excludes, rule.includes
    if arch in ex.arches or any(c in caps for c in ex.caps):
        return False
    if ex.min_kernel is not None and kernel >= ex.min_kernel:
        return False
    if inc.arches and arch not in inc.arches:
        return False
    if any(c not in caps for c in inc.caps):
        return False
    return not (inc.min_kernel is not None and kernel < inc.min_kernel)


def _arches(profile: Profile, native: str) -> list[str]:
    names = list(profile.architectures)
    for arch, subs in profile.arch_map:
        if arch == native:
            names += [arch, *subs]
    return [n.removeprefix("SCMP_ARCH_").lower() for n in names]


def compile_filter(profile: Profile, caps: frozenset[str], *, tree: bool = True) -> bytes:
    """The BPF program `profile` makes for a process holding `caps`, on this host; its
    syscall dispatch a binary tree (`tree`, libseccomp.Filter), else a list."""
    machine = os.uname().machine
    if machine not in _MACHINES:
        raise UsageError(f"seccomp: no profile mapping for architecture {machine}")
    arch, native = _MACHINES[machine]
    kernel = _kernel_version(os.uname().release)
    with libseccomp.Filter(profile.default_action, tree=tree) as flt:
        for name in _arches(profile, native):
            flt.add_arch(name)
        for rule in profile.rules:
            if rule.action == profile.default_action or not _applies(rule, arch, caps, kernel):
                continue
            for groups in _arg_groups(rule.args):
                for name in rule.names:
                    flt.add_rule(rule.action, name, groups)
        return flt.export_bpf()


def _arg_groups(args: Sequence[ArgCompare]) -> list[tuple[ArgCompare, ...]]:
    indexes = [a.index for a in args]
    if len(set(indexes)) == len(indexes):
        return [tuple(args)]
    return [(a,) for a in args]


@functools.lru_cache(maxsize=16)
def compiled_default(caps: frozenset[str]) -> bytes:
    """Docker's default profile for `caps`, compiled once per set in this process."""
    return compile_filter(default_profile(), caps)
