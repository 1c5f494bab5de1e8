"""The layer writer's exact bytes for a tree holding every kind of entry it handles.

The digests below were computed by the writer as it was before it was rewritten for speed
(commit 7aa9adb): any later change to the writer must give the same bytes, or every layer
ever built changes its digest and every cache misses. The compressed ones were computed
again when layers became runs of independent frames (layer/frames: this tree is two),
and checked then, as every run checks them, by the zstd and gzip CLIs against the tar
bytes. The tar stream is also read back by two independent readers (Python's tarfile and
GNU tar) and the compressed blobs by the zstd and gzip CLIs, so the golden digests are of
a stream those oracles accept.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.image.mediatypes import Compression
from builder.layer.tree import remove_tree
from builder.layer.write import write_layer
from tests.hostile.trees import make_deep

DEEP = 2100  # levels of "d/": 4,200 bytes of path, past PATH_MAX
CLAMP = 1_700_000_000
T = 1_650_000_000  # the mtime of most entries (below the clamp)
LONG = "L" * 200  # one component of 200 bytes: its path needs a PAX record
BINARY = b"caf\xe9"  # not UTF-8: PAX with hdrcharset=BINARY

# sha256 of the writer's output for the tree of _make, per (compression, clamp).
GOLDEN = {
    (Compression.NONE, None): "83df0f6de44d642f20ea90cc007a74ee61beef2886be49197c9042ca4b56a0dc",
    (Compression.NONE, CLAMP): "6e39772585e2e51b5822d5920fc375a9bb12a15fcd705b098e29b01554f7c925",
    (Compression.ZSTD, None): "c9d5d47c7a861926e7379932dcecc001470ff4adf47f845b1d714f4857023773",
    (Compression.GZIP, CLAMP): "87e79c10583f30cd6a7ba30e83b1f96eba8a6ec27649e9de2560b6d076dd1bdb",
}
# The compressed digests hold for the libraries they were computed with.
ZSTD_VERSION = (1, 5, 7)
ZLIB_VERSION = "1.2.13"


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    yield  # pytest's own clean-up (a recursive rmtree) fails on a chain past PATH_MAX
    for child in tmp_path.iterdir():
        remove_tree(child, ignore_errors=True)


def _file(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def _make(root: Path) -> None:
    rng = random.Random(9)
    root.mkdir()
    os.chmod(root, 0o755)
    _file(root / "empty", b"")
    _file(root / "one-block", b"b" * 512)
    _file(root / "big", rng.randbytes(3 << 20) + b"tail")  # several flushes of the writer
    _file(root / "flush-size", b"f" * (1 << 20))
    _file(root / "setuid", b"#!/bin/sh\n", 0o4755)
    (root / "dir" / "sub").mkdir(parents=True)
    _file(root / "dir" / "sub" / "f", b"hello\n", 0o600)
    _file(root / "dir" / "a-b", b"-")  # '-' sorts before '/': depth-first by bytes
    os.link(root / "dir" / "sub" / "f", root / "hardlink")
    os.link(root / "dir" / "sub" / "f", root / "dir" / LONG)  # a link whose name is long
    os.mkdir(root / "long")
    _file(root / "long" / LONG, b"long name\n")
    os.link(root / "long" / LONG, root / "zz-link-to-long")  # a long link target
    os.symlink("/etc/passwd", root / "sym")
    os.symlink("x/" * 80 + "target", root / "sym-long")
    os.symlink(os.fsdecode(b"to-" + BINARY), root / "sym-binary")
    _file(Path(os.fsdecode(bytes(root) + b"/" + BINARY)), b"latin-1 name\n")
    _file(root / "na\u00efve", b"utf-8 name\n")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o020666, os.makedev(1, 3))
    os.mknod(root / "block", 0o060640, os.makedev(7, 0))
    os.mknod(root / "gone", 0o020000, os.makedev(0, 0))  # overlay whiteout (char 0/0)
    _file(root / "gone-too", b"")
    os.setxattr(root / "gone-too", "trusted.overlay.whiteout", b"")  # the Linux 6.7 form
    (root / "opaque").mkdir()
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    _file(root / "opaque" / "kept", b"k")
    (root / "sticky").mkdir(mode=0o1777)
    os.chmod(root / "sticky", 0o1777)
    (root / "setgid").mkdir()
    os.chmod(root / "setgid", 0o2775)
    os.setxattr(root / "dir", "user.note", b"v\x00\xff")
    os.setxattr(root / "dir" / "sub" / "f", "user.b", b"2")
    os.setxattr(root / "dir" / "sub" / "f", "user.a", b"1")
    os.setxattr(root / "sym", "trusted.link", b"on the link itself", follow_symlinks=False)
    os.chown(root / "dir", 1234, 5678)
    os.chown(root / "big", 3_000_000, 4_000_000)  # past the octal field: PAX uid, gid
    os.chown(root / "sym", 42, 43, follow_symlinks=False)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "socket"))  # left out of the layer
    sock.close()
    make_deep(root / "deep", DEEP)  # its dirs get make_deep's own mtime
    times = {"future": 8**11 + 5, "negative": -5}  # PAX mtime; clamped to 0
    _file(root / "future", b"")
    _file(root / "negative", b"")
    others = [p for p in _shallow(root) if p.name != "deep"]
    for path in sorted(others, key=lambda p: -len(p.parts)):  # children before parents
        t = times.get(path.name, T + len(path.relative_to(root).parts))
        os.utime(path, (t, t), follow_symlinks=False)
    os.utime(root / "deep", (T, T))
    os.utime(root / "null", (CLAMP + 50, CLAMP + 50))  # newer than the clamp


def _shallow(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        yield path
        if path.is_dir() and not path.is_symlink() and path.name != "deep":
            yield from _shallow(path)


def _layer(src: Path, compression: Compression, clamp: int | None) -> bytes:
    out = io.BytesIO()
    digests = write_layer(src, out, compression, mtime_clamp=clamp)
    assert digests.size == len(out.getvalue())
    return out.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("golden") / "tree"
    _make(root)
    yield root
    remove_tree(root)


def test_every_kind_of_entry_reads_back_in_two_tar_readers(tree: Path) -> None:
    data = _layer(tree, Compression.NONE, None)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
    assert members["big"].uid == 3_000_000 and members["big"].size == (3 << 20) + 4
    assert members["hardlink"].islnk() and members["hardlink"].linkname == "dir/" + LONG
    assert members["zz-link-to-long"].linkname == "long/" + LONG
    assert members["sym-long"].linkname == "x/" * 80 + "target"
    assert members["future"].mtime == 8**11 + 5 and members["negative"].mtime == 0
    assert members["setuid"].mode == 0o4755 and members["sticky"].mode == 0o1777
    assert (members["block"].devmajor, members["block"].devminor) == (7, 0)
    assert members["sym"].pax_headers["SCHILY.xattr.trusted.link"] == "on the link itself"
    assert {".wh.gone", ".wh.gone-too", "opaque/.wh..wh..opq"} <= members.keys()
    assert "socket" not in members and "gone" not in members
    assert os.fsdecode(BINARY) in members and "na\u00efve" in members
    assert max(len(name) for name in members) == len("deep/") + 2 * DEEP + len("leaf")
    listing = subprocess.run(["tar", "-tf", "-"], input=data, capture_output=True, check=True)
    assert len(listing.stdout.splitlines()) == len(members)


@pytest.mark.parametrize(("compression", "clamp"), list(GOLDEN))
def test_layer_bytes_are_the_golden_ones(
    tree: Path, compression: Compression, clamp: int | None
) -> None:
    import zstandard

    data = _layer(tree, compression, clamp)
    if compression is not Compression.NONE:
        tool = ["zstd", "-dc"] if compression is Compression.ZSTD else ["gzip", "-dc"]
        plain = subprocess.run(tool, input=data, capture_output=True, check=True).stdout
        assert plain == _layer(tree, Compression.NONE, clamp)
        library = (
            zstandard.ZSTD_VERSION == ZSTD_VERSION
            if compression is Compression.ZSTD
            else zlib.ZLIB_VERSION.startswith(ZLIB_VERSION)
        )
        if not library:
            pytest.skip(f"the golden {compression.value} digest is for another library version")
    assert hashlib.sha256(data).hexdigest() == GOLDEN[compression, clamp]
