"""The subordinate range `--userns=auto` leases from: the user `containers` in /etc/subuid
and /etc/subgid (podman's name). Tests that need it call `ensure_range()`, which adds one
line to each file if the user has no range yet, and leaves any range it has alone."""

from __future__ import annotations

from pathlib import Path

from builder.sandbox.subids import OWNER, SIZE, slots

# Ten slots, far above the rootless tests' ranges (100000, 300000) and any uid in use.
START = 1_000_000_000
COUNT = 10 * SIZE


def ensure_range() -> None:
    if len(slots()) >= 2:  # two: the concurrency test leases two at once
        return
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        text = path.read_text(encoding="ascii") if path.exists() else ""
        if not any(line.startswith(f"{OWNER}:") for line in text.splitlines()):
            # Appended, not rewritten: the rootless tests edit these files too.
            with path.open("a", encoding="ascii") as f:
                f.write(("\n" if text and not text.endswith("\n") else "") + line_for())


def line_for() -> str:
    return f"{OWNER}:{START}:{COUNT}\n"
