"""The root: overlayfs semantics the layer writer relies on, stubs, many lowers, escapes."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import Mount, OverlayRoot, SandboxSpec

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


def test_empty_base_upper_holds_only_what_the_process_wrote(
    tmp_path: Path, busybox_root: Path, sh: ShRunner
) -> None:
    # Scratch base + a bind of busybox: a RUN on an empty image.
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    spec = SandboxSpec(
        OverlayRoot((), upper, work),
        (),
        env=("PATH=/bb/bin",),
        mounts=(Mount("/bb", "bind", busybox_root),),
    )
    status, out, err = sh(spec, "mkdir /data && echo x > /data/file && ls /")
    assert status == 0, err
    assert {"proc", "sys", "dev", "etc", "bb", "data"} <= set(out.split())
    assert sorted(os.listdir(upper)) == ["data"]
    assert (upper / "data" / "file").read_text() == "x\n"


def test_deleting_a_lower_file_makes_a_whiteout(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    root = overlay()
    status, _, err = sh(SandboxSpec(root, ()), "rm /etc/group && echo new > /etc/passwd")
    assert status == 0, err
    st = os.lstat(root.upper / "etc" / "group")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (0, 0)
    assert (root.upper / "etc" / "passwd").read_text() == "new\n"
    assert sorted(os.listdir(root.upper / "etc")) == ["group", "passwd"]  # no stub files


def test_sixty_lowers_top_wins(tmp_path: Path, busybox_root: Path, sh: ShRunner) -> None:
    # Long paths: 60 of them would not fit in one page of mount options as written.
    lowers = [busybox_root]
    for i in range(60):
        layer = tmp_path / f"layer-with-a-rather-long-directory-name-{i:03d}" / "diff"
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / f"{i:03d}").write_text(str(i))
        (layer / "top").write_text(str(i))
        lowers.append(layer)
    assert sum(len(str(p)) + 1 for p in lowers) > 4096
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    status, out, err = sh(
        SandboxSpec(OverlayRoot(tuple(lowers), upper, work), ()),
        "cat /top; echo; ls /layers | wc -l",
    )
    assert status == 0, err
    assert out.split() == ["59", "60"]


def test_symlinked_mount_points_stay_inside_the_root(
    tmp_path: Path, busybox_root: Path, sh: ShRunner
) -> None:
    # A hostile image: /proc points at an absolute path that exists on the host. Resolved
    # inside the root, it names the image's own dir of that path; the host's is untouched.
    host = tmp_path / "host-target"
    host.mkdir()
    evil = tmp_path / "evil"
    (evil / str(host).lstrip("/")).mkdir(parents=True)
    (evil / "proc").symlink_to(host)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    spec = SandboxSpec(OverlayRoot((busybox_root, evil), upper, work), ())
    status, out, err = sh(spec, f"ls {host}/self/exe >/dev/null && echo proc-ok")
    assert (status, out) == (0, "proc-ok\n"), err
    assert os.listdir(host) == []


def test_dangling_symlink_mount_point_is_refused(
    tmp_path: Path, busybox_root: Path, sh: ShRunner
) -> None:
    host = tmp_path / "not-on-the-host"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "sys").symlink_to("../../../../../.." + str(host))
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    spec = SandboxSpec(OverlayRoot((busybox_root, evil), upper, work), ())
    with pytest.raises(SandboxError, match="/sys is a dangling symlink"):
        sh(spec, "true")
    assert not host.exists()
    assert os.listdir(upper) == []


def test_a_user_reaches_the_root_of_a_private_upper_dir(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    # The store makes upper dirs with mkdtemp (0700); the merged "/" is that inode.
    root = overlay()
    os.chmod(root.upper, 0o700)
    status, out, err = sh(
        SandboxSpec(root, (), user="65534"), "cd / && ls /bin >/dev/null && echo ok"
    )
    assert (status, out) == (0, "ok\n"), err
