"""ADD of hostile (and of ordinary but absolute-linked) local tarballs, by BuildKit's rules:
members are relative to the destination, whatever their names say; paths resolve inside
the destination; absolute symlinks are kept as written (every distribution rootfs has them);
a name, link or hard link that climbs above the destination is refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from builder.engine.context import BuildContext
from builder.engine.copier import Ownership, copy_into_root
from builder.engine.extract import preload
from tests.e2e.support import Builder

Member = tuple[str, bytes, str | bytes]  # name, tar type, content (file) or link target


def _tarball(path: Path, members: list[Member], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o755, 1_600_000_000
            data = None
            if kind == tarfile.REGTYPE:
                assert isinstance(payload, bytes)
                info.size, data = len(payload), io.BytesIO(payload)
                info.mode = 0o755 if name.endswith("busybox") else 0o644
            elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                assert isinstance(payload, str)
                info.linkname = payload
            tar.addfile(info, data)
    return path


def _add(tmp_path: Path, members: list[Member], dest: str) -> tuple[Path, int, str]:
    """ADD t.tar.gz DEST, by the real writer, into a root dir; (root, status, stderr)."""
    context = tmp_path / "ctx"
    context.mkdir()
    _tarball(context / "t.tar.gz", members)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    items = BuildContext(context).plan_copy(("t.tar.gz",), dest)
    preload()
    fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)
    err_r, err_w = os.pipe()
    saved = os.dup(2)
    os.dup2(err_w, 2)  # the writer reports on fd 2, as in the sandbox
    try:
        status = copy_into_root(str(root), fd, items, [], Ownership(None), None, True)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(err_w)
        os.close(fd)
    with os.fdopen(err_r) as err:
        return root, status, err.read()


def test_an_absolute_member_name_lands_below_the_destination(tmp_path: Path) -> None:
    # An absolute name that, followed as written, would land in this test's own tmp dir
    # (so a regression writes nowhere it should not).
    escaped = tmp_path / "escaped"
    root, status, err = _add(tmp_path, [(str(escaped), tarfile.REGTYPE, b"x")], "/a/")
    assert (status, err) == (0, "")
    assert not escaped.exists()
    assert (root / "a" / str(escaped).lstrip("/")).read_bytes() == b"x"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("../up", tarfile.REGTYPE, b"x"), "'../up' is outside of"),
        (("a/../../up", tarfile.REGTYPE, b"x"), "'a/../../up' is outside of"),
        (("l", tarfile.SYMTYPE, "../../etc"), "invalid symlink 'l' -> '../../etc': outside of"),
        (("h", tarfile.LNKTYPE, "../etc/passwd"), "'../etc/passwd' is outside of"),
    ],
)
def test_what_climbs_above_the_destination_is_refused(
    tmp_path: Path, member: Member, message: str
) -> None:
    root, status, err = _add(tmp_path, [member], "/a/")
    assert status == 1 and message in err
    assert not (root / "up").exists() and not (root / "a" / "l").exists()


def test_a_path_through_a_dangling_link_is_a_clear_error(tmp_path: Path) -> None:
    members: list[Member] = [("lib", tarfile.SYMTYPE, "/usr/lib"), ("lib/x", tarfile.REGTYPE, b"")]
    root, status, err = _add(tmp_path, members, "/a/")
    assert status == 1 and "'lib' is a symlink to a missing directory" in err
    assert not (root / "usr").exists()


def test_slash_dot_dot_is_the_destination_itself(tmp_path: Path) -> None:
    # Cleaned first, as moby does: "/../x" is "/x", below the destination.
    root, status, _ = _add(tmp_path, [("/../x", tarfile.REGTYPE, b"x")], "/a/")
    assert status == 0 and (root / "a" / "x").read_bytes() == b"x"


def test_links_on_the_way_resolve_inside_the_destination(tmp_path: Path) -> None:
    members: list[Member] = [
        ("usr/lib", tarfile.DIRTYPE, b""),
        ("lib", tarfile.SYMTYPE, "/usr/lib"),  # absolute: kept, and followed inside /a
        ("lib/extra.so", tarfile.REGTYPE, b"so"),
        ("up", tarfile.SYMTYPE, "/"),
        ("up/etc/hostile", tarfile.REGTYPE, b"h"),
        ("hard", tarfile.LNKTYPE, "/usr/lib/extra.so"),  # relative to /a too
    ]
    root, status, err = _add(tmp_path, members, "/a/")
    assert (status, err) == (0, "")
    assert os.readlink(root / "a" / "lib") == "/usr/lib"
    assert (root / "a" / "usr" / "lib" / "extra.so").read_bytes() == b"so"
    assert (root / "a" / "etc" / "hostile").read_bytes() == b"h"
    assert not (root / "etc" / "hostile").exists() and not (root / "usr").exists()
    assert os.stat(root / "a" / "hard").st_ino == os.stat(root / "a/usr/lib/extra.so").st_ino


def _distro_rootfs(path: Path) -> Path:
    """A usrmerged rootfs as distributions ship it: relative and absolute symlinks."""
    busybox = Path("/bin/busybox").read_bytes()
    members: list[Member] = [
        ("./", tarfile.DIRTYPE, b""),
        ("./usr/", tarfile.DIRTYPE, b""),
        ("./usr/bin/", tarfile.DIRTYPE, b""),
        ("./usr/lib/", tarfile.DIRTYPE, b""),
        ("./usr/bin/busybox", tarfile.REGTYPE, busybox),
        ("./usr/bin/sh", tarfile.SYMTYPE, "/usr/bin/busybox"),
        ("./usr/bin/cat", tarfile.SYMTYPE, "/usr/bin/busybox"),
        ("./usr/lib/os-release", tarfile.REGTYPE, b"ID=hostile\n"),
        ("./bin", tarfile.SYMTYPE, "usr/bin"),
        ("./lib", tarfile.SYMTYPE, "usr/lib"),
        ("./etc/", tarfile.DIRTYPE, b""),
        ("./etc/os-release", tarfile.SYMTYPE, "../usr/lib/os-release"),
        ("./etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\n"),
    ]
    tarball = _tarball(path, members)
    os.chmod(path, 0o644)
    return tarball


def test_a_rootfs_with_absolute_symlinks_unpacks_at_root(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    _distro_rootfs(context / "rootfs.tar.gz")
    root = tmp_path / "root"
    root.mkdir()
    preload()
    items = BuildContext(context).plan_copy(("rootfs.tar.gz",), "/")
    fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert copy_into_root(str(root), fd, items, [], Ownership(None), None, True) == 0
    finally:
        os.close(fd)
    assert os.readlink(root / "usr" / "bin" / "sh") == "/usr/bin/busybox"
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "etc" / "os-release").read_bytes() == b"ID=hostile\n"


@pytest.mark.e2e
@pytest.mark.needs_root
def test_from_scratch_add_a_distribution_rootfs(builder: Builder, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    _distro_rootfs(context / "rootfs.tar.gz")
    (context / "Dockerfile").write_text(
        'FROM scratch\nADD rootfs.tar.gz /\nRUN ["/bin/sh", "-c", "cat /etc/os-release > /seen"]\n'
    )
    builder("build", "-t", "distro", context)
    out = builder("run", "--rm", "distro", "/bin/sh", "-c", "cat /seen /lib/os-release")
    assert out.stdout == "ID=hostile\nID=hostile\n"


@pytest.mark.e2e
@pytest.mark.needs_root
def test_add_keeps_absolute_names_in_the_destination(builder: Builder, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    _tarball(context / "t.tar", [("/etc/pwned", tarfile.REGTYPE, b"p")], mode="w")
    (context / "Dockerfile").write_text("FROM busybox\nADD t.tar /a/\n")
    builder("build", "-t", "pwn", context)
    script = "cat /a/etc/pwned && ! test -e /etc/pwned"
    assert builder("run", "--rm", "pwn", "sh", "-c", script).stdout == "p"
    (context / "Dockerfile").write_text("FROM busybox\nADD up.tar /a/\n")
    _tarball(context / "up.tar", [("../up", tarfile.REGTYPE, b"u")], mode="w")
    refused = builder("build", context, check=False)
    assert refused.status == 5
    assert "'../up' is outside of '/a'" in refused.stderr
    assert refused.stderr.count("error:") == 1 and "Traceback" not in refused.stderr
