"""/proc's host-wide knobs are read-only or hidden inside the sandbox, for good.

As host root the sandbox maps ids one to one, so its uid 0 passes the owner check on
/proc/sys files: without these mounts a RUN step could set host sysctls (core_pattern is
host code execution). The mounts are made before the user namespace, so they are locked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from builder.sandbox import OverlayRoot, SandboxSpec

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


def test_sysctls_cannot_be_written(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    current = Path("/proc/sys/vm/swappiness").read_text().strip()
    # Writing the value it already has: harmless if the protection were missing.
    status, out, err = sh(
        SandboxSpec(overlay(), ()),
        f"cat /proc/sys/vm/swappiness; echo {current} > /proc/sys/vm/swappiness",
    )
    assert out.strip() == current  # still readable
    assert status != 0 and "Read-only file system" in err, (status, err)


def test_the_protection_cannot_be_unmounted(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    status, _, err = sh(
        SandboxSpec(overlay(), ()), "busybox umount /proc/sys || busybox umount -l /proc/sys"
    )
    assert status != 0, err
    # The probe writes back the value the host already has: if the protection ever failed,
    # this test fails without changing the host.
    current = Path("/proc/sys/vm/swappiness").read_text().strip()
    status, out, err = sh(
        SandboxSpec(overlay(), ()),
        "busybox umount -l /proc/sys 2>/dev/null;"
        " awk '$5 == \"/proc/sys\" { print $6 }' /proc/self/mountinfo;"
        f" echo {current} > /proc/sys/vm/swappiness",
    )
    assert out.split(",")[0] == "ro", out  # still mounted, still read-only
    assert status != 0 and "Read-only file system" in err, (status, err)


def test_masked_proc_files_read_as_empty(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    present = [
        name
        for name in ("keys", "timer_list", "sched_debug", "kcore")
        if Path("/proc", name).exists()
    ]
    if not present:
        pytest.skip("none of the masked /proc files exists on this kernel")
    script = "; ".join(f"busybox wc -c < /proc/{name}" for name in present)
    status, out, err = sh(SandboxSpec(overlay(), ()), script)
    assert status == 0, err
    assert out.split() == ["0"] * len(present)
