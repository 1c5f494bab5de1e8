"""A blob's bytes go to its file by direct I/O a chunk at a time, the tail through the page
cache (blobs._Appender); where the file system refuses direct I/O, all of them through the
page cache. Either way the file holds the bytes, in order, at every size
around the chunk and block boundaries."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.image.mediatypes import MediaType
from builder.store import blobs

SIZES = [0, 1, 4095, 4096, 4097, blobs.CHUNK - 1, blobs.CHUNK, blobs.CHUNK + 1,
         2 * blobs.CHUNK + 4096 + 3]  # fmt: skip


def _write(directory: Path, data: bytes, piece: int) -> tuple[Path, blobs.BlobWriter]:
    (directory / "blobs").mkdir(exist_ok=True)
    w = blobs.BlobWriter(directory / "tmp-blob", directory / "blobs")
    for i in range(0, len(data), piece):
        w.write(data[i : i + piece])
    return directory / "blobs", w


@pytest.mark.parametrize("size", SIZES)
def test_every_size_lands_whole_by_direct_io(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    old_umask = os.umask(0o077)  # a blob is 0644 all the same
    try:
        out, w = _write(tmp_path, data, 1_000_003)  # odd pieces: chunks cut inside them
        desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    finally:
        os.umask(old_umask)
    assert desc.digest.hex == hashlib.sha256(data).hexdigest() and desc.size == size
    assert (out / desc.digest.hex).read_bytes() == data
    assert (out / desc.digest.hex).stat().st_mode & 0o777 == 0o644


def test_a_full_chunk_goes_by_direct_io_a_small_blob_never_opens_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    _, w = _write(tmp_path / "a", random.Random(1).randbytes(blobs.CHUNK + 10), 1 << 20)
    assert w._out is not None and w._out._direct >= 0  # (white box: this ext4 takes it)
    w.abort()
    (tmp_path / "b").mkdir()
    _, small = _write(tmp_path / "b", b"x" * 5000, 5000)
    assert small._out is not None and small._out._direct == -1  # never opened
    small.abort()


def _no_direct_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """open() refuses O_DIRECT, as a file system without it does (this kernel's tmpfs has
    it, so the refusal is made to order)."""
    real = os.open

    def refusing(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "no direct I/O here")
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing)


def test_a_file_system_without_direct_io_is_written_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_direct_io(monkeypatch)
    data = random.Random(2).randbytes(2 * blobs.CHUNK + 77)
    out, w = _write(tmp_path, data, 3 << 20)
    assert w._out is not None and w._out._direct == -2  # refused: through the page cache
    desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    assert (out / desc.digest.hex).read_bytes() == data
    assert desc.digest.hex == hashlib.sha256(data).hexdigest()


def test_a_range_is_copied_by_reads_where_direct_io_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(3).randbytes(blobs.CHUNK + 9000)
    (tmp_path / "previous").write_bytes(data)
    _no_direct_io(monkeypatch)
    fd = os.open(tmp_path / "previous", os.O_RDONLY)
    try:
        out, w = _write(tmp_path, b"head", 4)
        w.copy_range(fd, 4097, blobs.CHUNK + 10)  # unaligned, past a chunk
        w.write(b"tail")
        desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    finally:
        os.close(fd)
    want = b"head" + data[4097 : 4097 + blobs.CHUNK + 10] + b"tail"
    assert (out / desc.digest.hex).read_bytes() == want
    assert desc.digest.hex == hashlib.sha256(want).hexdigest()


def test_an_aborted_blob_gives_back_its_buffer_and_fds(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):  # more blobs than the pool keeps: none piles up
        _, w = _write(tmp_path, b"y" * (blobs.CHUNK + 1), blobs.CHUNK + 1)
        w.abort()
    assert len(os.listdir("/proc/self/fd")) == before
    assert len(blobs._buffers._free) <= blobs._Buffers.KEEP
    assert not (tmp_path / "tmp-blob").exists()


@pytest.mark.parametrize("size", [blobs.BACKGROUND_HASH, 3 * blobs.CHUNK + 4097])
@pytest.mark.parametrize("direct", [True, False])
def test_a_big_blob_reads_back_whole_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, direct: bool
) -> None:
    data = random.Random(size).randbytes(size)
    out, w = _write(tmp_path, data, 1 << 20)
    desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    if not direct:
        _no_direct_io(monkeypatch)
    with blobs.open_verified(out / desc.digest.hex, desc.digest) as f:
        assert f.read() == data
    # A flipped byte is told at the end, read either way.
    path = out / desc.digest.hex
    with open(path, "r+b") as f:
        f.seek(size - 1)
        f.write(bytes([data[-1] ^ 1]))
    with pytest.raises(StoreError, match="corrupt"), blobs.open_verified(path, desc.digest) as f:
        f.read()


def test_direct_reads_refused_midway_go_on_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(7).randbytes(2 * blobs.CHUNK + 5)
    out, w = _write(tmp_path, data, 1 << 20)
    desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    real, direct_reads = os.preadv, []

    def refusing_after_one(fd: int, buffers: list[memoryview], offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            direct_reads.append(offset)
            if len(direct_reads) > 1:  # the file system "refuses" it from the second chunk
                raise OSError(errno.EINVAL, "no direct I/O here")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", refusing_after_one)
    with blobs.open_verified(out / desc.digest.hex, desc.digest) as f:
        assert f.read() == data
    assert direct_reads == [0, blobs.CHUNK]  # one chunk direct, then through the page cache
