"""The mount-point skeleton below the overlay: no stub is made or removed in the upper dir,
and the layer a run leaves is the one the per-run stubs left."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from builder.layer.prune import prune_unchanged_dirs
from builder.sandbox import Mount, OverlayRoot, SandboxSpec, skeleton
from tests.sandbox.conftest import ShRunner

# What a RUN may do to the dirs the skeleton holds, and to others.
SCRIPTS = (
    "true",
    "ls / >/dev/null && cat /etc/hosts /etc/resolv.conf >/dev/null",
    "echo x > /etc/new && rm /etc/group",
    "mkdir -p /data/a && echo y > /data/a/f && chmod 700 /data",
    "touch /etc/t && rm /etc/t",
    "chmod 700 /etc",
)


def _tree(top: Path, lower: Path | None = None) -> dict[str, tuple[int, int, int, bytes]]:
    """Every entry below `top`: mode, owner, group and (file) content or (node) rdev; and
    the mtime of a dir `lower` has too (a new one's is the run's time: no two agree)."""
    out: dict[str, tuple[int, int, int, bytes]] = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(dirpath, name)
            rel = str(path.relative_to(top))
            st = os.lstat(path)
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else str(st.st_rdev).encode()
            if lower is not None and stat.S_ISDIR(st.st_mode) and (lower / rel).is_dir():
                data += f" mtime {st.st_mtime_ns}".encode()
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, data)
    return out


def _layer(root: OverlayRoot, sh: ShRunner, script: str) -> dict[str, tuple[int, int, int, bytes]]:
    status, _, err = sh(SandboxSpec(root, ()), script)
    assert status == 0, err
    prune_unchanged_dirs(root.upper, root.lowers)
    return _tree(root.upper, root.lowers[-1])


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_run_over_the_skeleton_leaves_the_layer_the_stubs_left(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, tmp_path: Path, script: str
) -> None:
    """busybox has no /sys and no /etc/hosts: the skeleton's show through, and what the
    run writes is what it wrote over per-run stubs (after prune, as a step commits)."""
    where = tmp_path / "skeleton"
    with_skeleton = replace(overlay(), skeleton=where)
    assert _layer(with_skeleton, sh, script) == _layer(overlay(), sh, script)
    # Nothing of ours lands in the upper dir, even before prune.
    assert not {"sys", "proc", "dev"} & set(os.listdir(with_skeleton.upper))
    made = _tree(where / skeleton.VERSION)  # a lower dir: never written
    assert sorted(made) == sorted([*skeleton.DIRS, *skeleton.FILES])
    assert all(data in (b"", b"0") for *_, data in made.values())


def test_no_stub_touches_the_upper_dir(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    """A run that changes nothing leaves the upper dir empty: no /etc copied up, no stub
    made and removed (the per-run stubs copy /etc up, for prune to drop later)."""
    root = overlay()
    with_skeleton = replace(root, skeleton=root.upper.parent / "skeleton")
    status, out, err = sh(
        SandboxSpec(with_skeleton, ()), "cat /proc/self/comm; ls /sys/kernel >/dev/null && echo ok"
    )
    assert (status, out) == (0, "cat\nok\n"), err
    assert os.listdir(with_skeleton.upper) == []
    status, _, err = sh(SandboxSpec(root, ()), "true")
    assert status == 0, err
    assert os.listdir(root.upper) == ["etc"]  # the stubs' way: /etc copied up


def test_a_layer_that_hides_the_skeleton_gets_a_stub(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, busybox_root: Path, tmp_path: Path
) -> None:
    """A whiteout of /sys and an /etc made opaque above hide the skeleton's: the sandbox
    makes those mount points per run again, and removes them after."""
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    os.setxattr(top / "etc", "trusted.overlay.opaque", b"y")
    os.mknod(top / "sys", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    root = replace(overlay(busybox_root, top), skeleton=tmp_path / "skeleton")
    status, out, err = sh(
        SandboxSpec(root, ()), "ls /etc; cat /etc/hostname >/dev/null; ls /sys/kernel >/dev/null"
    )
    assert status == 0, err
    assert out.split() == ["hostname", "hosts", "resolv.conf"]
    assert sorted(os.listdir(root.upper)) == ["etc"]  # the opaque /etc, copied up empty
    assert os.listdir(root.upper / "etc") == []


@pytest.mark.parametrize(
    "script", ("true", "touch /etc/t && rm /etc/t", "chmod 700 /etc", "echo x > /etc/f")
)
def test_on_a_base_without_etc_the_layer_is_the_stubs_one_too(
    tmp_path: Path, busybox_root: Path, sh: ShRunner, script: str
) -> None:
    """The skeleton's /etc shows alone: a run that leaves it empty leaves no /etc (a stub
    dir left empty was removed); one that writes there leaves it."""
    layers = []
    for name in ("stubs", "skeleton"):
        upper, work = tmp_path / name / "upper", tmp_path / name / "work"
        upper.mkdir(parents=True)
        work.mkdir()
        root = OverlayRoot((), upper, work, skeleton=None if name == "stubs" else tmp_path / "sk")
        mounts = (Mount("/bb", "bind", busybox_root),)
        status, _, err = sh(SandboxSpec(root, (), env=("PATH=/bb/bin",), mounts=mounts), script)
        assert status == 0, err
        layers.append(_tree(upper))
    assert layers[0] == layers[1]


def test_a_scratch_base_runs_over_the_skeleton_alone(
    tmp_path: Path, busybox_root: Path, sh: ShRunner
) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    root = OverlayRoot((), upper, work, skeleton=tmp_path / "skeleton")
    bind = Mount("/bb", "bind", busybox_root)
    spec = SandboxSpec(root, (), env=("PATH=/bb/bin",), mounts=(bind,))
    status, out, err = sh(spec, "ls /; echo x > /etc/f")
    assert status == 0, err
    assert {"proc", "sys", "dev", "etc", "bb"} <= set(out.split())
    assert sorted(os.listdir(upper)) == ["etc"]
    assert os.listdir(upper / "etc") == ["f"]


def test_the_skeleton_is_made_whole_once_whatever_the_umask(tmp_path: Path) -> None:
    where = tmp_path / "skeleton"
    old = os.umask(0o077)
    try:
        made: list[str] = []
        threads = [
            threading.Thread(target=lambda: made.append(skeleton.ensure(where))) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert set(made) == {str(where / skeleton.VERSION)}
    assert os.listdir(where) == [skeleton.VERSION]  # no half-made dir left behind
    tree = _tree(where / skeleton.VERSION)
    assert sorted(tree) == sorted([*skeleton.DIRS, *skeleton.FILES])
    for name, (mode, _, _, data) in tree.items():
        assert stat.S_IMODE(mode) == (0o644 if name in skeleton.FILES else 0o755), name
        assert data in (b"", b"0")
