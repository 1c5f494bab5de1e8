"""The layer writer's second process (layer/entryhelper): a layer's bytes are the same with it,
without it, and when it dies midway; the entries it declines are the writer's to make."""

from __future__ import annotations

import io
import os
import select
import signal
import stat
from pathlib import Path

import pytest

from builder.image.mediatypes import Compression
from builder.layer import entryhelper as eh
from builder.layer import tarwrite as tw
from builder.layer import write as lw
from builder.layer.write import LayerDigests, write_layer


def _mixed_tree(root: Path) -> None:
    """Several batches of entries, with every kind the helper must leave to the writer
    spread among plain small files."""
    for d in range(6):
        sub = root / f"d{d}"
        sub.mkdir()
        for i in range(400):
            (sub / f"f{i:04d}").write_bytes(b"x%d\n" % i * (i % 50))  # empty ones too
    os.setxattr(root / "d1" / "f0100", "user.k", b"v")  # xattrs: the writer's
    os.link(root / "d2" / "f0007", root / "d2" / "hardlink")  # two links: the writer's
    os.symlink("f0001", root / "d3" / "sym")
    os.mkfifo(root / "d3" / "fifo")
    (root / "d4" / "big").write_bytes(os.urandom(eh.MAX_FILE + 1))  # read by the writer
    (root / "d4" / "café-ü").write_bytes(b"not ascii")  # a PAX header, made by the helper
    (root / "d4" / ("long" * 40)).write_bytes(b"a long name")
    os.chmod(root / "d5" / "f0003", 0o4755)
    os.chown(root / "d5" / "f0004", 12345, 54321)
    deep = root / "deep"  # more dirs in a row than one request carries fds
    for i in range(3 * eh.MAX_FDS):
        deep = deep / f"{i}"
        deep.mkdir(parents=True)
        (deep / "f").write_bytes(b"%d" % i)


class _Counted(eh.EntryHelper):
    """The real helper, counting the entries it made; waited for at its start (the writer
    makes every entry itself until then), so that it gets some of any layer."""

    made = 0

    def ready(self) -> bool:
        while not super().ready():
            select.select([self._sock], [], [], 10)
        return True

    def take(self) -> eh.Made:
        lengths, data = super().take()
        _Counted.made += sum(1 for n in lengths if n)
        return lengths, data


class _NoHelper:
    def __init__(self) -> None:
        raise OSError("no helper")  # as when the interpreter cannot be started


def _write(src: Path, comp: Compression, identify: bool = False) -> tuple[LayerDigests, bytes]:
    out = io.BytesIO()
    return write_layer(src, out, comp, identify=identify), out.getvalue()


@pytest.mark.parametrize("comp", [Compression.ZSTD, Compression.GZIP, Compression.NONE])
def test_the_helper_changes_no_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comp: Compression
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    monkeypatch.setattr(lw, "EntryHelper", _Counted)
    _Counted.made = 0
    with_helper, blob = _write(src, comp, identify=True)
    assert _Counted.made > 100  # it did make some of them
    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)
    alone, blob_alone = _write(src, comp, identify=True)
    assert blob == blob_alone
    assert with_helper == alone  # digests, and the frames' identities and sources


def test_a_helper_that_dies_midway_leaves_the_writer_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)

    class Killed(eh.EntryHelper):
        def take(self) -> eh.Made:
            os.kill(self._proc.pid, signal.SIGKILL)  # with requests in flight
            self._proc.wait()
            return super().take()

    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)
    _, alone = _write(src, Compression.ZSTD)
    monkeypatch.setattr(lw, "EntryHelper", Killed)
    _, blob = _write(src, Compression.ZSTD)
    assert blob == alone


def _request(path: Path, dir_fd: int, st: os.stat_result) -> eh.Request:
    name = os.fsencode(path.name)
    return (0, name, b"dir/" + name, st.st_mode, st.st_uid, st.st_gid, st.st_size,
            int(st.st_mtime), st.st_dev)  # fmt: skip


def test_the_helper_declines_a_file_that_shrank_and_reads_a_grown_one_to_its_lstat_size(
    tmp_path: Path,
) -> None:
    shrank, grew = tmp_path / "shrank", tmp_path / "grew"
    shrank.write_bytes(b"0123456789")
    grew.write_bytes(b"0123456789")
    st_shrank, st_grew = os.lstat(shrank), os.lstat(grew)
    shrank.write_bytes(b"01234")
    with open(grew, "ab") as f:
        f.write(b"more")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = bytearray(b"before")
        assert not eh.plain_entry(fd, _request(shrank, fd, st_shrank), set(), out)
        assert out == b"before"  # untouched: the writer's own read says it shrank
        out = bytearray()
        assert eh.plain_entry(fd, _request(grew, fd, st_grew), set(), out)
        mtime = int(st_grew.st_mtime)
        head = tw.header(b"dir/grew", tw.REGTYPE, st_grew.st_mode, 0, 0, 10, mtime)
        assert out == head + b"0123456789" + tw.padding(10)  # what the writer's read(size) gives
    finally:
        os.close(fd)


def test_the_helper_declines_xattrs_and_vanished_files(tmp_path: Path) -> None:
    tagged, gone = tmp_path / "tagged", tmp_path / "gone"
    tagged.write_bytes(b"t")
    gone.write_bytes(b"g")
    os.setxattr(tagged, "user.k", b"v")
    st_tagged, st_gone = os.lstat(tagged), os.lstat(gone)
    gone.unlink()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = bytearray()
        assert not eh.plain_entry(fd, _request(tagged, fd, st_tagged), set(), out)
        assert not eh.plain_entry(fd, _request(gone, fd, st_gone), set(), out)
        assert out == b""
        # A file system that cannot hold xattrs (its dev in the set) is not asked.
        assert eh.plain_entry(fd, _request(tagged, fd, st_tagged), {st_tagged.st_dev}, out)
    finally:
        os.close(fd)


def test_a_vanished_file_is_the_writers_error_with_the_helper_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    victim = src / "d5" / "f0200"

    gather = lw._Batch.gather

    def gather_then_remove(batch: lw._Batch, *args: object) -> bool:
        more = gather(batch, *args)  # type: ignore[arg-type]
        if any(v.path == b"d5/f0200" for v in batch.visits):
            victim.unlink()  # after the walk's lstat, before its open (here or in the helper)
        return more

    monkeypatch.setattr(lw._Batch, "gather", gather_then_remove)
    monkeypatch.setattr(lw, "EntryHelper", _Counted)
    with pytest.raises(lw.LayerError, match="cannot read d5/f0200: No such file"):
        write_layer(src, io.BytesIO(), Compression.ZSTD)
    assert stat.S_ISDIR(os.lstat(src / "d5").st_mode)
