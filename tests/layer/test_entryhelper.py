"""The layer writer's second process (layer/entryhelper): a layer's bytes are the same with it,
without it, and when it dies midway; the entries it declines are the writer's to make."""

from __future__ import annotations

import errno
import io
import itertools
import marshal
import os
import random
import select
import signal
import socket
import stat
import subprocess
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.image.mediatypes import Compression
from builder.layer import entryhelper as eh
from builder.layer import tarwrite as tw
from builder.layer import write as lw
from builder.layer.frames import AVG_FRAME, PreviousBlob
from builder.layer.tree import Run, walk, walk_runs
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
        made = super().take()
        _Counted.made += sum(1 for n in made.lengths if n)
        return made


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


def _linked_tree(root: Path, outside: Path) -> None:
    """Files with more links, in several batches: link groups within a Run, across dirs and
    batches; first names the helper makes and first names it declines (xattrs, a size over
    MAX_FILE, the end of a reply) with later names it makes; files whose only other link is
    outside the tree (a COPY layer's relinked files: every name is a first)."""
    for d in range(4):
        sub = root / f"d{d}"
        sub.mkdir()
        for i in range(700):
            (sub / f"f{i:04d}").write_bytes(b"y%d\n" % i * (i % 40))
    for d in range(4):  # later names of d0's files, in d0 and in every later batch
        for i in range(0, 700, 7):
            os.link(root / "d0" / f"f{i:04d}", root / f"d{d}" / f"l{d}-{i:04d}")
    big = root / "d0" / "e-big"
    big.write_bytes(os.urandom(eh.MAX_FILE + 1))  # declined: its later names are made
    os.setxattr(root / "d0" / "f0003", "user.k", b"v")  # declined, as are its links
    os.link(big, root / "d3" / "zz-big")
    os.link(root / "d0" / "f0003", root / "d2" / "zz-tagged")
    for i in range(0, 700, 3):  # one name here, the other outside (as relinked files)
        os.link(root / "d1" / f"f{i:04d}", outside / f"o{i}")
    (root / "z").mkdir()
    for d in range(3):  # replies that end at MAX_MADE: the rest are this thread's
        sub = root / f"m{d}"
        sub.mkdir()
        for i in range(30):
            (sub / f"h{i:02d}").write_bytes(os.urandom(eh.MAX_FILE))
            if i % 4 == 0:
                os.link(sub / f"h{i:02d}", root / "z" / f"m{d}-{i:02d}")


@pytest.mark.parametrize("comp", [Compression.ZSTD, Compression.NONE])
def test_files_with_more_links_are_made_by_the_helper_with_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comp: Compression
) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    src.mkdir()
    outside.mkdir()
    _linked_tree(src, outside)
    linked_made = 0

    class Linked(_Counted):
        def take(self) -> eh.Made:
            nonlocal linked_made
            made = super().take()
            linked_made += len(made.linked)
            return made

    monkeypatch.setattr(lw, "EntryHelper", Linked)
    with_helper, blob = _write(src, comp, identify=True)
    assert linked_made > 500  # it made files with more links, first and later names
    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)
    alone, blob_alone = _write(src, comp, identify=True)
    assert blob == blob_alone
    assert with_helper == alone  # and the frames' sources (their link counts)
    tar = _write(src, Compression.NONE)[1]
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert members["d3/l3-0007"].islnk() and members["d3/l3-0007"].linkname == "d0/f0007"
    assert members["d0/l0-0014"].linkname == "d0/f0014"
    assert members["d3/zz-big"].linkname == "d0/e-big"
    assert members["d2/zz-tagged"].linkname == "d0/f0003"
    assert members["z/m1-04"].linkname == "m1/h04"
    assert members["d1/f0003"].isfile()  # its other name is outside


def test_frames_of_relinked_files_made_by_the_helper_are_known_by_their_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COPY layer's files relinked to the previous version's (their other name outside
    the tree): frames of them alone are taken from the previous blob by their sources,
    with the helper as without it (it reports their link counts)."""
    src, outside = tmp_path / "src", tmp_path / "outside"
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
    outside.mkdir()
    rng = random.Random(3)
    for i in range(3000):
        path = src / f"d{i % 3}" / f"f{i:04d}"
        path.write_bytes(rng.randbytes(3000))
        os.link(path, outside / f"o{i}")
    monkeypatch.setattr(lw, "EntryHelper", _Counted)
    digests, blob = _write(src, Compression.ZSTD, identify=True)
    assert digests.frames is not None
    (tmp_path / "prev").write_bytes(blob)
    previous = PreviousBlob(tmp_path / "prev", digests.frames)
    skipped = {}
    for helper in (_Counted, _NoHelper):
        monkeypatch.setattr(lw, "EntryHelper", helper)
        _Counted.made = 0
        out = io.BytesIO()
        again = write_layer(src, out, Compression.ZSTD, previous=previous)
        assert helper is _NoHelper or _Counted.made > 1000
        assert out.getvalue() == blob
        skipped[helper] = again.skipped
    assert skipped[_Counted] == skipped[_NoHelper] > 0


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


def _make(dir_fd: int, *names: str, no_xattrs: set[int] | None = None) -> eh.Made:
    """The helper's answer for `names` in the dir `dir_fd` (one Run, below b"dir/")."""
    runs = [(0, b"dir/", [n.encode() for n in names])]
    return eh.make_all(
        [dir_fd], (1 << 62, AVG_FRAME, True, runs), set() if no_xattrs is None else no_xattrs
    )


def test_the_helper_declines_a_file_that_shrank_and_reads_a_grown_one_to_its_lstat_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shrank, grew = tmp_path / "shrank", tmp_path / "grew"
    shrank.write_bytes(b"0123456789")
    grew.write_bytes(b"0123456789")
    lstat = os.lstat

    def lstat_then_change(path: Any, *, dir_fd: int | None = None) -> os.stat_result:
        st = lstat(path, dir_fd=dir_fd)
        if path == b"shrank":  # after the helper's lstat, before its read
            shrank.write_bytes(b"01234")
        else:
            with open(grew, "ab") as f:
                f.write(b"more")
        return st

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        monkeypatch.setattr(eh.os, "lstat", lstat_then_change)
        made = _make(fd, "grew", "shrank")
        monkeypatch.undo()
        assert made.lengths[1] == 0 and made.declined == [1]  # the writer's read says it shrank
        st_grew = os.lstat(grew)
        head = tw.header(b"dir/grew", tw.REGTYPE, st_grew.st_mode, 0, 0, 10, int(st_grew.st_mtime))
        # What the writer's read(size) gives: the size the header says.
        assert made.data == head + b"0123456789" + tw.padding(10)
        assert made.lengths[0] == len(made.data)
        assert made.inodes[0] == (st_grew.st_dev, st_grew.st_ino, 10, 1)
    finally:
        os.close(fd)


def test_the_helper_declines_xattrs_whiteout_names_and_vanished_files(
    tmp_path: Path,
) -> None:
    for name in ("tagged", ".wh.x", "plain", "linked"):
        (tmp_path / name).write_bytes(b"t")
    os.setxattr(tmp_path / "tagged", "user.k", b"v")
    os.link(tmp_path / "linked", tmp_path / "link2")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        made = _make(fd, "tagged", ".wh.x", "gone", "plain", "linked")
        assert made.declined == [0, 1, 2]
        assert made.lengths[:3] == [0, 0, 0] and made.lengths[3:] == [1024, 1024]
        # A file with two links is made as its first name, and named with its inode: the
        # writer keeps it, or makes a link entry of it if the inode has an earlier name.
        st = os.lstat(tmp_path / "linked")
        assert made.linked == [(4, st.st_dev, st.st_ino)]
        assert made.inodes[4] == (st.st_dev, st.st_ino, 1, 2)
        # A file system that cannot hold xattrs (its dev in the set) is not asked.
        dev = os.lstat(tmp_path).st_dev
        assert _make(fd, "tagged", no_xattrs={dev}).declined == []
    finally:
        os.close(fd)


def test_the_helper_names_the_entries_a_frame_may_end_after(tmp_path: Path) -> None:
    """Its candidates are those frames.Cutter.after_entry would end a frame after, past the
    frame's minimum (the crc32 of their first block modulo the average below their size)."""
    names = [f"f{i:04d}" for i in range(3000)]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"%d" % i * (i % 7))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        made = eh.make_all(
            [fd], (1 << 62, 1 << 12, False, [(0, b"", [n.encode() for n in names])]), set()
        )
    finally:
        os.close(fd)
    expected, at = [], 0
    for i, n in enumerate(made.lengths):
        if zlib.crc32(made.data[at : at + 512]) % (1 << 12) < n:
            expected.append(i)
        at += n
    assert 0 < len(expected) < 3000 and made.candidates == expected


def _change_after_listing(
    monkeypatch: pytest.MonkeyPatch, path: bytes, change: Callable[[], object]
) -> None:
    """Make `change` once the walk has listed `path` (not lstat'ed it: a regular file),
    before it is opened, here or in the helper."""
    gather = lw._Batch.gather

    def gather_then_change(batch: lw._Batch, *args: object) -> bool:
        more = gather(batch, *args)  # type: ignore[arg-type]
        if any(prefix + name == path for _, prefix, names in batch.runs for name in names):
            change()
        return more

    monkeypatch.setattr(lw._Batch, "gather", gather_then_change)
    monkeypatch.setattr(lw, "EntryHelper", _Counted)


def test_a_file_removed_after_its_dir_was_read_is_skipped_as_the_walk_skips_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    victim = src / "d5" / "f0200"
    before = os.lstat(src / "d5")

    def remove() -> None:
        victim.unlink()
        os.utime(src / "d5", ns=(before.st_atime_ns, before.st_mtime_ns))  # as written

    _change_after_listing(monkeypatch, b"d5/f0200", remove)
    _, blob = _write(src, Compression.ZSTD)
    monkeypatch.undo()
    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)
    _, without = _write(src, Compression.ZSTD)  # the tree as it is now
    assert blob == without


def test_a_file_replaced_by_a_dir_after_its_dir_was_read_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    victim = src / "d5" / "f0200"

    def replace() -> None:
        victim.unlink()
        victim.mkdir()

    _change_after_listing(monkeypatch, b"d5/f0200", replace)
    with pytest.raises(lw.LayerError, match="d5/f0200: the tree changed while it was walked"):
        write_layer(src, io.BytesIO(), Compression.ZSTD)


def test_a_file_that_shrank_after_its_lstat_is_the_writers_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    victim = src / "d4" / "big"  # declined by the maker (too big): made by the writer
    ino = os.lstat(victim).st_ino
    lstat = os.lstat
    seen = []

    def lstat_then_truncate(path: object, *, dir_fd: int | None = None) -> os.stat_result:
        st = lstat(path, dir_fd=dir_fd)  # type: ignore[arg-type]
        if st.st_ino == ino:
            seen.append(st)
            if len(seen) == 2:  # the writer's (the maker's was first)
                os.truncate(victim, 1)  # after this thread's lstat, before its read
        return st

    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)  # (the helper's own lstat: a unit test)
    monkeypatch.setattr(lw.os, "lstat", lstat_then_truncate)
    with pytest.raises(lw.LayerError, match="d4/big shrank while it was being archived"):
        write_layer(src, io.BytesIO(), Compression.ZSTD)


@pytest.mark.parametrize("proc", [True, False])
def test_a_walk_in_runs_leaves_only_regular_files_unstatted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: bool
) -> None:
    _mixed_tree(tmp_path)
    with open(os.fsencode(tmp_path) + b"/d3/caf\xe9", "wb"):  # not UTF-8: str listings
        pass  # surrogate-escape it
    scandir = os.scandir

    def scandir_without_proc(path: Any) -> Any:
        if isinstance(path, bytes):
            raise PermissionError(errno.EACCES, "no /proc here")
        return scandir(path)

    if not proc:  # the listing falls back on the fd itself
        monkeypatch.setattr(os, "scandir", scandir_without_proc)
    full = [(v.path, v.st) for v in walk(tmp_path)]
    lazy: list[tuple[bytes, os.stat_result | None]] = []
    for item in walk_runs(tmp_path, 7):
        if isinstance(item, Run):
            assert 0 < len(item.names) <= 7
            lazy.extend((item.prefix + name, None) for name in item.names)
        else:
            lazy.append((item.path, item.st))
    assert [p for p, _ in lazy] == [p for p, _ in full]  # the same entries, in order
    for (path, st), (_, lazy_st) in zip(full, lazy, strict=True):
        if stat.S_ISREG(st.st_mode):
            assert lazy_st is None, path
        else:
            assert lazy_st is not None, path
            assert (lazy_st.st_mode, lazy_st.st_ino) == (st.st_mode, st.st_ino), path


def test_the_helper_ends_with_the_write_even_if_its_socket_was_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    helpers: list[eh.EntryHelper] = []
    copies: list[int] = []

    class Copied(_Counted):
        def __init__(self) -> None:
            super().__init__()
            helpers.append(self)
            # As a process another thread forks meanwhile holds it: closing ours is no EOF.
            copies.append(os.dup(self._sock.fileno()))

    monkeypatch.setattr(lw, "EntryHelper", Copied)
    try:
        start = time.monotonic()
        _write(src, Compression.ZSTD)
        assert time.monotonic() - start < 8  # (close() waits 10 s before it kills)
        assert helpers and helpers[0]._proc.returncode == 0  # it ended by itself
    finally:
        for fd in copies:
            os.close(fd)


def test_a_dead_helper_is_noticed_though_a_copy_of_its_end_lives_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)
    _, alone = _write(src, Compression.ZSTD)
    copies: list[int] = []
    socketpair = socket.socketpair

    def pair_with_a_copy(*args: Any) -> tuple[socket.socket, socket.socket]:
        ours, theirs = socketpair(*args)
        copies.append(os.dup(theirs.fileno()))  # as a process forked meanwhile holds it
        return ours, theirs

    class Killed(_Counted):
        def take(self) -> eh.Made:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            return super().take()  # no EOF comes: the copy is open

    monkeypatch.setattr(socket, "socketpair", pair_with_a_copy)
    monkeypatch.setattr(lw, "EntryHelper", Killed)
    try:
        _, blob = _write(src, Compression.ZSTD)
    finally:
        for fd in copies:
            os.close(fd)
    assert copies and blob == alone


@pytest.mark.parametrize("helper", [_Counted, _NoHelper])
def test_frames_end_where_the_cutter_ends_them_entry_by_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helper: type
) -> None:
    """The writer finds the cuts in a run of made entries by bisection; they must be those
    frames.Cutter makes looking at each entry in turn (layer/tarcuts does so, from the tar
    bytes alone). Frames are made small here so that a few MB hold dozens of cuts, by
    candidates and by the maximum, among entries made by the helper, by this thread, and
    not made by the helper (links, xattrs, symlinks, dirs)."""
    from builder.layer import frames
    from builder.layer.tarcuts import TarCuts

    for module in (frames, lw):
        monkeypatch.setattr(module, "MIN_FRAME", 64 << 10)
        monkeypatch.setattr(module, "AVG_FRAME", 128 << 10)
        monkeypatch.setattr(module, "MAX_FRAME", 160 << 10)
    src = tmp_path / "src"
    src.mkdir()
    _mixed_tree(src)
    rng = random.Random(7)
    for d in range(3):
        sub = src / f"r{d}"
        sub.mkdir()
        for i in range(700):
            (sub / f"g{i:04d}").write_bytes(rng.randbytes(rng.randint(0, 4000)))
    monkeypatch.setattr(lw, "EntryHelper", helper)
    _Counted.made = 0
    digests, blob = _write(src, Compression.ZSTD)
    assert helper is _NoHelper or _Counted.made > 1000
    assert digests.frames is not None
    tar = _write(src, Compression.NONE)[1]
    cuts = TarCuts().feed(tar)
    sizes = [frame.size for frame in digests.frames.frames]
    assert len(sizes) > 30
    # Cuts of both kinds: after a candidate entry, and at the maximum.
    assert any(size >= 160 << 10 for size in sizes) and any(size < 160 << 10 for size in sizes)
    assert list(itertools.accumulate(sizes))[:-1] == cuts
    assert sum(sizes) == len(tar)
    assert (
        subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout == tar
    )


def test_requests_stay_small_whatever_the_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requests the helper has not read yet must fit a socket's default buffer (else
    the writer could wait on a send while the helper waits on its reply): a batch of long
    names is cut short."""
    src = tmp_path / "src"
    for d in range(2):
        sub = src / ("d" * 200 + str(d))
        sub.mkdir(parents=True)
        for i in range(1500):
            (sub / f"{i:04d}{'n' * 250}").write_bytes(b"%d" % i)
    sizes: list[int] = []

    class Measured(_Counted):
        def submit(self, fds: list[int], request: eh.Request) -> None:
            sizes.append(len(marshal.dumps(request)))
            super().submit(fds, request)

    monkeypatch.setattr(lw, "EntryHelper", Measured)
    _Counted.made = 0
    with_helper = _write(src, Compression.ZSTD)[1]
    assert len(sizes) > 5 and max(sizes) <= 50 << 10
    monkeypatch.setattr(lw, "EntryHelper", _NoHelper)
    assert _write(src, Compression.ZSTD)[1] == with_helper
