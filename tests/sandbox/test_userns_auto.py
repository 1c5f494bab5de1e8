"""`userns="auto"`: container root is a leased unprivileged host range, the root's files
show and are written with the image's own ids (idmapped layers), binds as the spec asks."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import Mount, OverlayRoot, SandboxSpec, subids
from tests.e2e.runtime_support import mounts_with
from tests.subids import ensure_range

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _range() -> None:
    if os.geteuid() != 0:
        pytest.skip("--userns=auto needs root")
    ensure_range()


def _base(out: str) -> int:
    found = re.search(r"^\s*0\s+(\d+)\s+65536\s*$", out, re.M)
    assert found, out
    return int(found.group(1))


def _shared(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    path.chmod(0o777)
    return path


@pytest.mark.parametrize("network", ["none", "host"])
def test_root_is_the_range_and_the_upper_dir_keeps_the_image_ids(
    overlay: Callable[..., OverlayRoot], tmp_path: Path, sh: ShRunner, network: str
) -> None:
    root = overlay()
    mapped, plain = _shared(tmp_path, "mapped"), _shared(tmp_path, "plain")
    spec = SandboxSpec(root, (), userns="auto", network=network,  # type: ignore[arg-type]
                       mounts=(Mount("/mapped", "bind", mapped, readonly=False),))  # fmt: skip
    script = (
        "cat /proc/self/uid_map && ls -lnd /bin/busybox && touch /new /mapped/f"
        " && mkdir /u && chown 1000:1000 /u && rm /bin/ls"
    )
    status, out, err = sh(spec, script)
    assert status == 0, err
    base = _base(out)
    assert base in {ids.uid for ids in subids.slots()}
    assert re.search(r"\s0\s+0\s.*/bin/busybox", out), out  # the image's owner, not nobody
    upper = root.upper
    assert (upper / "new").stat().st_uid == 0
    owned = (upper / "u").stat()
    assert (owned.st_uid, owned.st_gid) == (1000, 1000)
    whiteout = os.lstat(upper / "bin" / "ls")
    assert stat.S_ISCHR(whiteout.st_mode) and (whiteout.st_uid, whiteout.st_gid) == (0, 0)
    assert (mapped / "f").stat().st_uid == 0  # an idmapped bind (RUN's mounts)
    # The same with the binds as the host has them (`run -v`): root writes as the range.
    spec = SandboxSpec(overlay(), (), userns="auto", idmap_binds=False,
                       mounts=(Mount("/plain", "bind", plain, readonly=False),))  # fmt: skip
    status, out, err = sh(spec, "cat /proc/self/uid_map; touch /plain/f")
    assert status == 0, err
    assert (plain / "f").stat().st_uid == _base(out) != 0
    assert mounts_with(str(tmp_path)) == []
    assert subids.leased() == []


def test_unknown_userns_mode_is_refused(overlay: Callable[..., OverlayRoot]) -> None:
    from builder.sandbox import run

    spec = SandboxSpec(overlay(), ("true",), userns="keep-id")  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="unknown user namespace mode 'keep-id'"):
        run(spec)
