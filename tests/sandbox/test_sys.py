"""/sys/firmware (ACPI tables, DMI serials, EFI variables) is hidden inside the sandbox, for
good: an empty read-only tmpfs covers it, as runc does, mounted before the user namespace
so the process cannot lift it. Nothing here can change the host: the probes only read,
and an unmount inside the sandbox acts on its own mount namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from builder.sandbox import OverlayRoot, SandboxSpec

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _host_has_firmware() -> None:
    if not any(Path("/sys/firmware").iterdir()):
        pytest.skip("the host's /sys/firmware is empty: nothing to hide")


def test_sys_firmware_is_empty(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    status, out, err = sh(
        SandboxSpec(overlay(), ()), "ls -A /sys/firmware; echo --; ls /sys/kernel"
    )
    assert status == 0, err
    firmware, kernel = out.split("--")
    assert firmware.split() == [], firmware
    assert kernel.split(), "the rest of /sys is still there"


def test_the_mask_cannot_be_unmounted(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    status, out, err = sh(
        SandboxSpec(overlay(), ()),
        "busybox umount /sys/firmware 2>/dev/null && echo unmounted;"
        " busybox umount -l /sys/firmware 2>/dev/null && echo unmounted;"
        " ls -A /sys/firmware",
    )
    assert status == 0, err
    assert "unmounted" not in out, out
    assert out.split() == [], out
