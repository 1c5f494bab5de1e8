"""The process's capabilities, seccomp filter and no_new_privs, as the kernel reports them
and as they act. Docker's defaults: 14 capabilities (bounding, permitted, effective),
inheritable and ambient empty, its seccomp profile, no_new_privs off.

Every probe is harmless should a protection regress: a new namespace made inside the
sandbox, a tmpfs mounted in that private namespace, chown of a file in the container's
own upper dir, a setuid copy of busybox that lives in a test lower dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.sandbox import OverlayRoot, SandboxSpec
from builder.sandbox.capabilities import DEFAULT, tweak
from builder.sandbox.security import INSECURE, Security

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]
DOCKER_CAPS = "00000000a80425fb"  # the 14, as /proc/self/status prints them
UNCONFINED = Security(seccomp="unconfined")


def _status(sh: ShRunner, spec: SandboxSpec) -> dict[str, str]:
    status, out, err = sh(spec, "cat /proc/self/status")
    assert status == 0, err
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_root_gets_dockers_capabilities_and_seccomp(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    got = _status(sh, SandboxSpec(overlay(), ()))
    assert [got[k] for k in ("CapBnd", "CapPrm", "CapEff")] == [DOCKER_CAPS] * 3, got
    assert got["CapInh"] == got["CapAmb"] == "0000000000000000", got
    assert got["Seccomp"] == "2", got
    assert got["NoNewPrivs"] == "0", got


def test_a_user_starts_with_no_capability_in_the_same_bounds(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    got = _status(sh, SandboxSpec(overlay(), (), user="65534"))
    assert got["CapBnd"] == DOCKER_CAPS, got
    assert got["CapPrm"] == got["CapEff"] == got["CapInh"] == "0000000000000000", got


def test_insecure_has_every_capability_and_no_filter(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    got = _status(sh, SandboxSpec(overlay(), (), security=INSECURE))
    every = f"{(1 << (int(Path('/proc/sys/kernel/cap_last_cap').read_text()) + 1)) - 1:016x}"
    assert got["CapBnd"] == got["CapEff"] == every, got
    assert got["Seccomp"] == "0", got


# A new mount namespace, then a tmpfs in it: CAP_SYS_ADMIN in the container's user
# namespace is all it takes, and the tmpfs is private to the probe.
MOUNT_PROBE = "unshare -m sh -c 'mount -t tmpfs probe /tmp && echo mounted'"


def test_without_cap_sys_admin_no_mount_even_without_seccomp(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    status, out, err = sh(SandboxSpec(overlay(), (), security=UNCONFINED), MOUNT_PROBE)
    assert status != 0 and "mounted" not in out, (out, err)
    assert "Operation not permitted" in err, err


def test_cap_add_sys_admin_lifts_both_the_capability_and_its_seccomp_rules(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    # The profile's caps-conditional rule: unshare and mount are allowed with CAP_SYS_ADMIN.
    security = Security(capabilities=tweak(["SYS_ADMIN"], []))
    status, out, err = sh(SandboxSpec(overlay(), (), security=security), MOUNT_PROBE)
    assert (status, out) == (0, "mounted\n"), err


def test_cap_drop_takes_a_default_capability_away(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    script = "touch /f && chown 65534 /f && echo chowned"
    status, out, err = sh(SandboxSpec(overlay(), ()), script)
    assert (status, out) == (0, "chowned\n"), err
    security = Security(capabilities=tweak([], ["chown"]))
    status, out, err = sh(SandboxSpec(overlay(), (), security=security), script)
    assert status != 0 and "Operation not permitted" in err, (out, err)


def test_seccomp_refuses_what_no_capability_guards(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    # A user namespace needs no capability at all: only the profile stands in the way
    # (the kernel surface reachable from inside one is what Docker's profile keeps away).
    probe = "unshare -U true && echo unshared"
    status, out, err = sh(SandboxSpec(overlay(), ()), probe)
    assert status != 0 and "Operation not permitted" in err, (out, err)
    status, out, err = sh(SandboxSpec(overlay(), (), security=UNCONFINED), probe)
    assert (status, out) == (0, "unshared\n"), err


def test_a_profile_file_in_dockers_format(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"],'
        ' "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}'
    )
    spec = SandboxSpec(overlay(), (), security=Security(seccomp=str(profile)))
    status, out, err = sh(spec, "mkdir /tmp/d || echo refused; unshare -U true && echo unshared")
    assert out == "refused\nunshared\n", (status, err)  # the file, not the default, applies
    assert "Permission denied" in err, err


# ---- no_new_privs ---------------------------------------------------------------------


@pytest.fixture
def suid_layer(tmp_path: Path) -> Path:
    """A lower dir with a setuid-root busybox, a password-less root and a user."""
    layer = tmp_path / "suid"
    (layer / "bin").mkdir(parents=True)
    (layer / "etc").mkdir()
    shutil.copy2("/bin/busybox", layer / "bin" / "busybox-suid")
    os.chown(layer / "bin" / "busybox-suid", 0, 0)
    os.chmod(layer / "bin" / "busybox-suid", 0o4755)
    (layer / "etc" / "passwd").write_text(
        "root::0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n"
    )
    (layer / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    return layer


SU = "busybox-suid su -c 'id -u' root"


def test_setuid_su_works_for_a_user(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, busybox_root: Path, suid_layer: Path
) -> None:
    status, out, err = sh(SandboxSpec(overlay(busybox_root, suid_layer), (), user="user"), SU)
    assert (status, out) == (0, "0\n"), err


def test_no_new_privileges_stops_setuid(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, busybox_root: Path, suid_layer: Path
) -> None:
    spec = SandboxSpec(
        overlay(busybox_root, suid_layer),
        (),
        user="user",
        security=Security(no_new_privileges=True),
    )
    status, out, err = sh(spec, SU)
    assert status != 0 and "must be suid" in err, (out, err)
    assert _status(sh, spec)["NoNewPrivs"] == "1"
    assert _status(sh, spec)["Seccomp"] == "2"


def test_the_defaults_are_dockers() -> None:
    assert Security().capabilities == DEFAULT and len(DEFAULT) == 14
