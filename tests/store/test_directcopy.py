"""DirectCopy: ranges of another file appended by direct I/O at a file's unaligned end, with
the partial last block written before it (still a dirty page) read back and kept."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
from pathlib import Path

import pytest

from builder.store import directcopy
from builder.store.directcopy import BLOCK, DirectCopy


def _source(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "source"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def _page_cached_pages(fd: int, size: int) -> int:
    """How many of the file's pages are in the page cache (mincore of a map of it; private
    and writable only so that ctypes can take its address)."""
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    mapped = mmap.mmap(fd, size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        buf = (ctypes.c_char * size).from_buffer(mapped)
        vec = (ctypes.c_ubyte * pages)()
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec):
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del buf
        return sum(v & 1 for v in vec)
    finally:
        mapped.close()


def test_ranges_appended_at_unaligned_ends_are_the_bytes(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(12 << 20)
    src = _source(tmp_path, data)
    target = tmp_path / "blob"
    want = b""
    try:
        with open(target, "xb") as f:
            f.write(b"h" * 5000)  # a partial block, dirty in the page cache
            f.flush()
            want += b"h" * 5000
            copier = DirectCopy(target)
            try:
                at = 5000
                # (3 MiB + 17 from an odd offset: the buffer fills, and a tail is left)
                for offset, length in ((4097, (3 << 20) + 17), (1, directcopy.BUFFER + 5)):
                    assert copier.append(src, offset, length, f.fileno(), at)
                    at += length
                    want += data[offset : offset + length]
                    f.seek(at)
                    f.write(b"between")  # and a plain write after it
                    f.flush()
                    at += 7
                    want += b"between"
                assert copier.usable
            finally:
                copier.close()
            os.fsync(f.fileno())
    finally:
        os.close(src)
    assert target.read_bytes() == want


def test_the_whole_blocks_do_not_go_through_the_page_cache(tmp_path: Path) -> None:
    """What the copy is for: direct writes leave no pages of the range cached (a buffered
    copy leaves all of them), only the partial tail block."""
    length = 4 << 20
    src = _source(tmp_path, random.Random(6).randbytes(length))
    target = tmp_path / "blob"
    try:
        with open(target, "xb") as f:
            copier = DirectCopy(target)
            try:
                assert copier.append(src, 0, length - 100, f.fileno(), 0)
            finally:
                copier.close()
            fd = os.open(target, os.O_RDONLY)
            try:
                cached = _page_cached_pages(fd, length - 100)
            finally:
                os.close(fd)
    finally:
        os.close(src)
    assert cached <= 1, f"{cached} pages of the copied range are in the page cache"
    assert (length - 100) // BLOCK > 1000


def test_a_short_source_is_an_error_not_a_short_blob(tmp_path: Path) -> None:
    src = _source(tmp_path, b"x" * (2 << 20))
    target = tmp_path / "blob"
    try:
        with open(target, "xb") as f:
            copier = DirectCopy(target)
            try:
                with pytest.raises(OSError) as caught:
                    copier.append(src, 1 << 20, 2 << 20, f.fileno(), 0)
            finally:
                copier.close()
    finally:
        os.close(src)
    assert caught.value.errno == errno.EIO


def test_a_refused_direct_open_says_so_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without O_DIRECT answers EINVAL at open (none here refuses it: the
    answer is simulated); the caller then copies through the page cache."""
    real_open = os.open

    def no_direct(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    src = _source(tmp_path, b"y" * (2 << 20))
    target = tmp_path / "blob"
    monkeypatch.setattr(directcopy.os, "open", no_direct)
    try:
        with open(target, "xb") as f:
            copier = DirectCopy(target)
            assert not copier.append(src, 0, 2 << 20, f.fileno(), 0)
            assert not copier.usable
            copier.close()
    finally:
        monkeypatch.undo()
        os.close(src)
    assert target.stat().st_size == 0
