"""/dev holds Docker's small set and no host device; /sys is read-only. The probes only
read, or write to /dev/null."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from builder.sandbox import OverlayRoot, SandboxSpec
from builder.sandbox.mounts import SYS_MASKED

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


def test_dev_holds_only_dockers_set(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    status, out, err = sh(SandboxSpec(overlay(), ()), "ls -A /dev")
    assert status == 0, err
    assert out.split() == sorted(
        [
            "fd",
            "full",
            "null",
            "ptmx",
            "pts",
            "random",
            "shm",
            "stderr",
            "stdin",
            "stdout",
            "tty",
            "urandom",
            "zero",
        ]
    )


def test_no_other_device_node_anywhere(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    status, out, err = sh(
        SandboxSpec(overlay(), ()),
        "find / \\( -path /proc -o -path /sys \\) -prune -o \\( -type c -o -type b \\)"
        " -exec stat -c '%t:%T %n' {} +",
    )
    assert status == 0, err
    # mem's null, zero, full, random, urandom; tty; the pts instance's own ptmx (hex).
    assert sorted(out.splitlines()) == [
        "1:3 /dev/null",
        "1:5 /dev/zero",
        "1:7 /dev/full",
        "1:8 /dev/random",
        "1:9 /dev/urandom",
        "5:0 /dev/tty",
        "5:2 /dev/pts/ptmx",
    ]


def test_dev_and_sys_mount_flags(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    status, out, err = sh(
        SandboxSpec(overlay(), ()),
        "grep -E '^[^ ]+ /(dev|sys) ' /proc/mounts; touch /sys/probe",
    )
    flags = {line.split()[1]: line.split()[3].split(",") for line in out.splitlines()}
    # nodev on the /dev tmpfs: a node made there (CAP_MKNOD is in Docker's set) opens
    # nothing; the bound nodes above keep their own mount's flags.
    assert "nodev" in flags["/dev"] and "nosuid" in flags["/dev"], out
    assert "ro" in flags["/sys"], out
    assert status != 0 and "Read-only file system" in err, err


@pytest.mark.parametrize("name", SYS_MASKED)
def test_sys_masks_are_empty(name: str, overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    host = Path("/sys", name)
    if not host.is_dir() or not any(host.iterdir()):
        pytest.skip(f"the host's /sys/{name} is empty or missing: nothing to hide")
    status, out, err = sh(SandboxSpec(overlay(), ()), f"ls -A /sys/{name}")
    assert (status, out) == (0, ""), err
