"""BlobWriter.copy_range: a previous blob's bytes read, hashed and appended on a thread of
its own, by direct I/O where the file systems take it, from this file system or another (a
tmpfs source)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from builder.image.mediatypes import MediaType
from builder.store import Store, blobs


def _source(directory: Path, data: bytes) -> int:
    path = directory / "previous-blob"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def _copy_and_check(tmp_path: Path, source_dir: Path) -> None:
    store = Store.open(tmp_path / "store")
    rng = random.Random(3)
    data = rng.randbytes(11 << 20)
    fd = _source(source_dir, data)
    try:
        ranges = [(0, 5000), (5000, 9 << 20), (4097, 1), (7, (2 << 20) + 3)]  # unaligned too
        want = b""
        with store.layout.writer() as w:
            for offset, length in ranges:
                w.copy_range(fd, offset, length)
                w.write(b"between")  # written bytes and copied ranges, in order
                want += data[offset : offset + length] + b"between"
            desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    finally:
        os.close(fd)
    assert desc.digest.hex == hashlib.sha256(want).hexdigest() and desc.size == len(want)
    assert store.layout.read(desc.digest) == want


def test_copied_ranges_are_the_bytes_and_the_digest(tmp_path: Path) -> None:
    _copy_and_check(tmp_path, tmp_path)


def test_a_range_from_another_file_system(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system at /dev/shm")
    source_dir = shm / f"h9-copy-range-{os.getpid()}"
    source_dir.mkdir()
    try:
        _copy_and_check(tmp_path, source_dir)
    finally:
        (source_dir / "previous-blob").unlink(missing_ok=True)
        source_dir.rmdir()


def test_a_range_past_the_end_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    fd = _source(tmp_path, b"short")
    try:
        with store.layout.writer() as w:
            with pytest.raises(ValueError):
                w.copy_range(fd, 0, 1 << 20)
            assert w.size == 0
            w.write(b"x")
            assert w.commit(MediaType.OCI_LAYER_ZSTD).digest.hex == hashlib.sha256(b"x").hexdigest()
    finally:
        os.close(fd)


def test_a_range_goes_in_before_the_seal(tmp_path: Path) -> None:
    """A copied range and the bytes after it go into the temp file on the copier's thread
    as they come, a chunk at a time, from the writer's own dup of the fd (the layer writer
    closes the previous blob before the commit): the commit's fsync (behind the build's
    next steps, before its reply) finds them written, not a whole layer to copy."""
    store = Store.open(tmp_path / "store")
    data = random.Random(4).randbytes(3 * blobs.CHUNK)
    fd = _source(tmp_path, data)
    length = 2 * blobs.CHUNK + 5
    with store.layout.writer() as w:
        w.write(b"head")
        w.copy_range(fd, 5, length)
        os.close(fd)
        w.write(b"tail")
        on_disk = w._tmp  # (the temp file the commit renames in)
        deadline = time.monotonic() + 30
        while on_disk.stat().st_size < 2 * blobs.CHUNK and time.monotonic() < deadline:
            time.sleep(0.01)
        want = b"head" + data[5 : 5 + length] + b"tail"
        assert on_disk.read_bytes()[: 2 * blobs.CHUNK] == want[: 2 * blobs.CHUNK]
        desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    assert desc.digest.hex == hashlib.sha256(want).hexdigest() and desc.size == len(want)
    assert store.layout.read(desc.digest) == want


def _held_copier(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The copier's range copies wait for the event (a slow disk, made to order)."""
    go = threading.Event()
    real = blobs._copy_range

    def held(*args: int) -> None:
        go.wait(30)
        real(*args)

    monkeypatch.setattr(blobs, "_copy_range", held)
    return go


def test_bytes_behind_a_range_wait_for_the_copier_up_to_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes written behind a range not copied yet are held, up to PENDING_BYTES; then
    the writer waits for the copier (no unbounded memory)."""
    monkeypatch.setattr(blobs, "PENDING_BYTES", 1 << 20)
    go = _held_copier(monkeypatch)
    store = Store.open(tmp_path / "store")
    data = random.Random(5).randbytes(2 << 20)
    fd = _source(tmp_path, data)
    with store.layout.writer() as w:
        w.copy_range(fd, 0, 2 << 20)
        os.close(fd)
        w.write(b"a" * (512 << 10))
        w.write(b"b" * (600 << 10))  # held: 512 KiB were below the bound
        third = threading.Thread(target=w.write, args=(b"c" * 10,))
        third.start()
        third.join(0.5)
        assert third.is_alive()  # past the bound: waits for the copier
        go.set()
        third.join(30)
        assert not third.is_alive()
        desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    want = data + b"a" * (512 << 10) + b"b" * (600 << 10) + b"c" * 10
    assert store.layout.read(desc.digest) == want


def test_a_failed_copy_fails_the_commit_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copier's failure (here its source cut short before it copied: a short range)
    is the commit's, and the blob is not put in place."""
    go = _held_copier(monkeypatch)
    store = Store.open(tmp_path / "store")
    source = tmp_path / "previous-blob"
    fd = _source(tmp_path, b"q" * (2 << 20))
    with store.layout.writer() as w:
        w.copy_range(fd, 0, 2 << 20)
        os.truncate(source, 1 << 20)
        go.set()
        with pytest.raises(OSError, match="short"):
            w.commit(MediaType.OCI_LAYER_ZSTD)
    os.close(fd)
    assert list((tmp_path / "store" / "layout" / "blobs" / "sha256").iterdir()) == []
    assert not any(p.name.startswith("blob") for p in (tmp_path / "store" / "tmp").iterdir())


def test_an_aborted_blob_lets_go_of_its_copied_ranges(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    fd = _source(tmp_path, b"z" * (2 << 20))
    before = len(os.listdir("/proc/self/fd"))
    with store.layout.writer() as w:
        w.copy_range(fd, 0, 2 << 20)
        assert len(os.listdir("/proc/self/fd")) > before
    os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == before - 1
    assert not any(p.name.startswith("blob") for p in (tmp_path / "store" / "tmp").iterdir())


class _SlowHash:
    """A sha256 that takes its time: the copier reads on while chunks wait for it."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        time.sleep(0.02)
        self.inner.update(data)


def test_a_buffer_is_read_into_again_only_once_its_chunk_is_hashed(tmp_path: Path) -> None:
    """The copier reads the next chunk while the hasher takes the last; a buffer whose
    chunk is not hashed yet is not read into (the digest would be of other bytes)."""
    data = random.Random(6).randbytes(6 * blobs.CHUNK + 123)
    fd = _source(tmp_path, data)
    out_fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    slow = _SlowHash()
    hasher = blobs._Hasher(slow)  # type: ignore[arg-type]
    out = blobs._Appender(out_fd, tmp_path / "out")
    try:
        blobs._copy_range(fd, 7, len(data) - 7, hasher, out)
        out.finish()
        hasher.finish()
    finally:
        os.close(fd)
        os.close(out_fd)
    assert slow.inner.hexdigest() == hashlib.sha256(data[7:]).hexdigest()
    assert (tmp_path / "out").read_bytes() == data[7:]
