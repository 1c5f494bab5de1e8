"""BlobWriter.copy_range: a previous blob's bytes appended by the kernel (copy_file_range),
hashed where they lie; between file systems (EXDEV, for real: a tmpfs source) by reads."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from builder.image.mediatypes import MediaType
from builder.store import Store


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
