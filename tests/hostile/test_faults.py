"""Faults leave nothing behind: SIGKILL a real `builder build` in a long COPY and a real
`builder import` of a big tarball; the next command that writes to the store sweeps what
they left in its tmp/, and never what a live build is using. `prune` during a build names
what holds the store. (A full disk: test_full_disk.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.support import Builder

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

FILES = 20_000  # enough that COPY and the import take seconds, each file tiny


def _many_files(top: Path) -> Path:
    for i in range(FILES // 100):
        sub = top / f"d{i:03}"
        sub.mkdir(parents=True)
        for j in range(100):
            (sub / f"f{j:02}").write_bytes(b"%d" % j)
    return top


def _start(builder: Builder, *args: str | Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The CLI in the background; its stderr goes to `stderr.log` beside the store."""
    with open(builder.root.parent / "stderr.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "builder", "--root", str(builder.root), *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, **env},
        )


def _stderr(builder: Builder) -> str:
    return (builder.root.parent / "stderr.log").read_text(errors="replace")


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the command ended first ({proc.returncode})")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what}: never happened")
        time.sleep(0.02)


def _tmp(builder: Builder, prefix: str = "") -> list[Path]:
    return sorted(p for p in (builder.root / "tmp").iterdir() if p.name.startswith(prefix))


def _has_files(entries: list[Path]) -> bool:
    return any(any(True for _ in e.rglob("f*")) for e in entries if e.is_dir())


@pytest.fixture
def system_tmp(tmp_path: Path) -> Path:
    """A TMPDIR of the test's own: the builder must leave nothing there (it used to make
    /tmp/builder-sandbox-* dirs that a kill left for good)."""
    path = tmp_path / "system-tmp"
    path.mkdir()
    return path


def test_a_killed_copy_is_swept_by_the_next_build(
    builder: Builder, tmp_path: Path, system_tmp: Path
) -> None:
    context = _many_files(tmp_path / "ctx")
    (context / "Dockerfile").write_text("FROM busybox\nCOPY . /data/\n")
    proc = _start(builder, "build", "-t", "big", context, env={"TMPDIR": str(system_tmp)})
    _wait_for(proc, lambda: _has_files(_tmp(builder, "upper-")), "COPY writing its upper dir")
    # (The COPY's writer runs in a thread of the build: sandbox/inthread.)
    assert _tmp(builder, "in-root-"), "the writers' mount point lives under the store"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _tmp(builder), "the kill left work behind (or the test did not catch the COPY)"
    small = tmp_path / "small"
    small.mkdir()
    (small / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    builder("build", small)  # any verb that writes to the store sweeps
    assert _tmp(builder) == []
    # (Secrets are never staged on disk: test_secrets.py.)
    assert [p for p in system_tmp.iterdir() if p.name.startswith("builder-")] == []


def test_a_killed_import_is_swept_by_the_next_command(builder: Builder, tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(_many_files(tmp_path / "rootfs"), arcname=".")
    proc = _start(builder, "import", tarball, "imported", env={})
    _wait_for(proc, lambda: _has_files(_tmp(builder, "import-")), "import unpacking")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _tmp(builder, "import-")
    busybox = builder("inspect", "busybox")  # read-only: sweeps nothing
    assert busybox.status == 0 and _tmp(builder, "import-")
    builder("run", "--rm", "busybox", "true")  # a verb that uses the store: sweeps
    assert _tmp(builder) == []


def test_a_live_builds_work_is_never_swept(builder: Builder, tmp_path: Path) -> None:
    context = _many_files(tmp_path / "ctx")
    (context / "Dockerfile").write_text("FROM busybox\nCOPY . /data/\n")
    proc = _start(builder, "build", "-t", "big", context, env={})
    _wait_for(proc, lambda: _has_files(_tmp(builder, "upper-")), "COPY writing its upper dir")
    small = tmp_path / "small"
    small.mkdir()
    (small / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    builder("build", small)  # sweeps: must leave the live build's entries alone
    refused = builder("prune", check=False)  # and prune waits for it, naming it
    assert proc.wait(timeout=300) == 0, _stderr(builder)
    assert refused.status == 6
    assert f"in use by `builder build` (pid {proc.pid})" in refused.stderr
    assert "run `builder prune` again when it ends" in refused.stderr
    assert _tmp(builder) == []
    listing = builder("run", "--rm", "big", "sh", "-c", "find /data -type f | wc -l")
    assert listing.stdout.strip() == str(FILES + 1)  # and the Dockerfile
