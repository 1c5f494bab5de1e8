"""What the `builder run` end-to-end tests share: the CLI as a process they can signal,
and the checks that nothing of a container outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.support import Builder


def popen(builder: Builder, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "builder", "--root", str(builder.root), *args], **kwargs
    )


def processes_with(*needles: str, exact: bool = False) -> list[int]:
    """Live (not zombie) processes whose command line holds any of `needles` (with `exact`,
    is one of them, its words joined by spaces)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z":
            continue
        words = cmdline.strip()
        if any(words == n.encode() if exact else n.encode() in words for n in needles):
            found.append(int(entry))
    return found


def mounts_with(needle: str) -> list[str]:
    """Mounts, in any process's mount namespace we can read, whose line names `needle`."""
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/mountinfo").read_text()
            except OSError:
                continue
            lines += [line for line in text.splitlines() if needle in line]
    return lines


def wait_gone(*needles: str, timeout: float = 10.0) -> list[int]:
    """Wait until no process names `needles`; those left after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := processes_with(*needles)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def containers_of(builder: Builder) -> list[str]:
    path = builder.root / "containers"
    return (
        sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        if path.is_dir()
        else []
    )


def leftovers(builder: Builder, token: str) -> dict[str, object]:
    """Everything a finished container could leave: processes (ours carry the store's path
    in their command line, the container's the test's token), mounts, scratch entries."""
    root = str(builder.root)
    tmp = builder.root / "tmp"
    return {
        "processes": wait_gone(root, token),
        "mounts": mounts_with(root),
        "tmp": sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else [],
    }


def kill_leftovers(builder: Builder) -> None:
    """After a test, whatever it asserted: no supervisor of its store may outlive it (its
    containers die with it, by their parent-death signal)."""
    for pid in processes_with(str(builder.root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
