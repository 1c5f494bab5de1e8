"""A busybox root file system for the sandbox tests (real kernel, real overlayfs)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from builder.sandbox import DEVNULL, OverlayRoot, SandboxSpec, run
from tests.e2e.support import busybox_module

BUSYBOX = "/bin/busybox"

# The host sysctl a sandbox must set in its own network namespace, never on the host.
KNOB = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


@pytest.fixture(scope="session")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The one rootfs maker (scripts/busybox_rootfs.py), the demo's and the e2e tests' too.
    return Path(busybox_module().make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs"))


@pytest.fixture
def overlay(tmp_path: Path, busybox_root: Path) -> Callable[..., OverlayRoot]:
    """A fresh upper/work over the given lowers (default: the busybox root)."""

    def make(*lowers: Path) -> OverlayRoot:
        base = Path(tempfile.mkdtemp(dir=tmp_path))
        upper, work = base / "upper", base / "work"
        upper.mkdir()
        work.mkdir()
        return OverlayRoot(lowers or (busybox_root,), upper, work)

    return make


ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


def _run_sh(spec: SandboxSpec, script: str) -> tuple[int, str, str]:
    """Run `sh -c script`; (status, stdout, stderr) captured through real pipes."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        status = run(
            replace(spec, argv=("sh", "-c", script), stdin=DEVNULL, stdout=out_w, stderr=err_w)
        )
    finally:
        os.close(out_w)
        os.close(err_w)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        return status, out.read(), err.read()


@pytest.fixture
def sh() -> ShRunner:
    return _run_sh


@pytest.fixture
def host_knob() -> Iterator[str]:
    """The host's value, checked unchanged after the test."""
    if not KNOB.exists():
        pytest.skip("no ip_unprivileged_port_start on this kernel (before 4.11)")
    before = KNOB.read_text()
    yield before
    assert KNOB.read_text() == before, "the host's sysctl changed"
