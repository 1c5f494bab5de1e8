"""The layer writer's fast paths: the one-pass ustar header at the edges of its fields, and
the writer thread handing a write failure (a full disk) back to the caller."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.image.mediatypes import Compression
from builder.layer import tarwrite as tw
from builder.layer.write import write_layer


def _tarfile(name: str, kind: bytes, uid: int, size: int, mtime: int, link: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, 0o2750, uid, uid
    info.size, info.mtime, info.linkname, info.uname, info.gname = size, mtime, link, "", ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("name", "kind", "uid", "size", "mtime", "link"),
    [
        ("n" * 100, tarfile.REGTYPE, 0, 0, 0, ""),  # the longest name without PAX
        ("n" * 101, tarfile.REGTYPE, 0, 0, 0, ""),
        ("u", tarfile.REGTYPE, 8**7 - 1, 0, 0, ""),  # the largest octal uid
        ("u", tarfile.REGTYPE, 8**7, 0, 0, ""),
        ("s", tarfile.REGTYPE, 0, 8**11 - 1, 8**11 - 1, ""),
        ("s", tarfile.REGTYPE, 0, 8**11, 8**11, ""),
        ("l", tarfile.SYMTYPE, 0, 0, 5, "t" * 100),
        ("l", tarfile.LNKTYPE, 0, 0, 5, "t" * 101),
        ("~" * 100, tarfile.SYMTYPE, 8**7 - 1, 0, 8**11 - 1, "~" * 100),  # the largest sum
    ],
)
def test_header_at_the_edges_of_the_fast_path_equals_tarfile(
    name: str, kind: bytes, uid: int, size: int, mtime: int, link: str
) -> None:
    ours = tw.header(name.encode(), kind, 0o2750, uid, uid, size, mtime, link.encode())
    assert ours == _tarfile(name, kind, uid, size, mtime, link)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 256 KiB: writing a bigger layer into it fails with ENOSPC."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=True)  # even with a file open


@pytest.mark.parametrize("buffering", [0, -1])  # a raw file writes short before it fails
def test_a_full_disk_reaches_the_caller_as_itself_and_no_thread_is_left(
    tmp_path: Path, small_fs: Path, buffering: int
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    # 4 MB, incompressible: less than one zstd job (8 MB), so the whole blob comes out of
    # the compressor's last call as ONE write, which a raw file cuts short at 256 KiB.
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(1 << 20))
    before = threading.active_count()
    out = open(small_fs / "blob", "wb", buffering=buffering)  # noqa: SIM115
    try:
        with pytest.raises(OSError) as caught:
            write_layer(src, out, Compression.ZSTD)
    finally:
        with contextlib.suppress(OSError):
            out.close()  # what a buffered file still holds cannot be flushed either
    assert caught.value.errno == errno.ENOSPC
    assert threading.active_count() == before
