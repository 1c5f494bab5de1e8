"""COPY --from's packer asks libc's name service nothing: it runs with the image's root as
its own (sandbox/inthread), where a lookup would read the image's nsswitch.conf and could
load its libnss modules into our process. Its entries are tar.add's otherwise."""

from __future__ import annotations

import grp
import os
import pwd
import tarfile
from pathlib import Path
from typing import NoReturn

import pytest

from builder.engine.stagecopy import pack


def _tree(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "sub" / "f").write_text("f\n")
    os.symlink("sub/f", root / "d" / "link")
    (root / "top").write_text("top\n")
    os.link(root / "top", root / "top-again")
    os.mkfifo(root / "fifo")
    os.chown(root / "top", 12, 34)
    os.chmod(root / "top", 0o4750)
    os.utime(root / "top", ns=(1_700_000_000_250_000_000,) * 2)


def _entries(path: Path) -> list[tuple[object, ...]]:
    with tarfile.open(path) as tar:
        return [
            (m.name, m.type, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname)
            for m in tar.getmembers()
        ]


def test_pack_looks_no_owner_name_up_and_writes_tar_adds_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    sources = ("/d", "/top", "/top-again", "/fifo")
    out = tmp_path / "packed.tar"

    def refuse(_id: int) -> NoReturn:
        raise AssertionError("the name service was asked")

    monkeypatch.setattr(pwd, "getpwuid", refuse)
    monkeypatch.setattr(grp, "getgrgid", refuse)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        assert pack(str(root), fd, sources) == 0
    finally:
        os.close(fd)
    monkeypatch.undo()

    # What tar.add(recursive=False) writes for the named sources (names aside).
    expected = tmp_path / "expected.tar"
    with tarfile.open(expected, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root / "d", arcname=".", recursive=False)
        for name in sources[1:]:
            tar.add(root / name.lstrip("/"), arcname=name.lstrip("/"), recursive=False)
    packed = _entries(out)
    named = [packed[0], *packed[-3:]]
    assert named == _entries(expected)
    assert named[1][5] == 1_700_000_000.25  # the PAX header's fraction, as tar.add's
    assert named[2][1] == tarfile.LNKTYPE and named[2][7] == "top"
    assert {e[0] for e in packed[1:-3]} == {"./sub", "./sub/f", "./link"}
