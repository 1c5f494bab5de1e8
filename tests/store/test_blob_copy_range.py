"""BlobWriter.copy_range: a previous blob's bytes appended by the kernel (copy_file_range),
hashed where they lie; between file systems (EXDEV, for real: a tmpfs source) by reads."""

from __future__ import annotations

import hashlib
import os
import random
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


def test_a_range_from_another_file_system_is_copied_by_reads(tmp_path: Path) -> None:
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


def test_a_range_goes_in_at_the_commit_with_what_follows_it_up_to_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copied range is hashed at once and put in the file by the commit (behind the
    build's next steps), from the writer's own dup of the fd: the layer writer closes the
    previous blob before the commit. The bytes written after it wait with it, up to
    PENDING_BYTES; then they and the range go in at once (no unbounded memory)."""
    monkeypatch.setattr(blobs, "PENDING_BYTES", 1 << 20)
    store = Store.open(tmp_path / "store")
    data = random.Random(4).randbytes(3 << 20)
    fd = _source(tmp_path, data)
    with store.layout.writer() as w:
        w.copy_range(fd, 5, 2 << 20)
        os.close(fd)
        on_disk = w._tmp  # (the temp file the commit renames in)
        w.write(b"a" * (512 << 10))
        assert on_disk.stat().st_size == 0
        w.write(b"b" * (600 << 10))  # past the bound
        assert on_disk.stat().st_size == (2 << 20) + (1112 << 10)
        w.write(b"c" * 10)  # written as it comes again
        desc = w.commit(MediaType.OCI_LAYER_ZSTD)
    want = data[5 : 5 + (2 << 20)] + b"a" * (512 << 10) + b"b" * (600 << 10) + b"c" * 10
    assert desc.digest.hex == hashlib.sha256(want).hexdigest() and desc.size == len(want)
    assert store.layout.read(desc.digest) == want


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
