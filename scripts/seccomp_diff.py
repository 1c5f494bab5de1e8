#!/usr/bin/env python3
"""Compare our shipped seccomp profile with another in Docker's format (moby's
profiles/seccomp/default.json, say) by meaning, not by layout.

Usage: PYTHONPATH=. scripts/seccomp_diff.py OTHER.json [OURS.json]

Prints one line per syscall rule that only one side has (`-` ours only, `+` theirs only),
with its action, argument tests and conditions, and exits 1 if there is any. Name order,
grouping and comments do not count.
"""

from __future__ import annotations

import sys

from builder.sandbox.seccomp import DEFAULT_FILE, Profile, read_profile

Entry = tuple[str, str]


def entries(profile: Profile) -> set[Entry]:
    """(syscall, everything else about its rule as text) for each name of each rule."""
    head = f"default={profile.default_action:#x} arches={sorted(profile.arch_map)}"
    found = {("*", head)}
    for rule in profile.rules:
        rest = f"action={rule.action:#x} args={list(rule.args)} "
        rest += f"includes={rule.includes} excludes={rule.excludes}"
        found.update((name, rest) for name in rule.names)
    return found


def diff(ours: Profile, theirs: Profile) -> list[str]:
    mine, other = entries(ours), entries(theirs)
    return [f"- {n} {r}" for n, r in sorted(mine - other)] + [
        f"+ {n} {r}" for n, r in sorted(other - mine)
    ]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    ours = read_profile(argv[2] if len(argv) == 3 else DEFAULT_FILE)
    lines = diff(ours, read_profile(argv[1]))
    print("\n".join(lines) or "same rules")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
