"""relink.prefetch: the previous blob is read into the page cache in the background, all
of it (one WILLNEED reads a readahead window's worth), while the COPY's writer runs."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from builder.engine.relink import prefetch
from tests.pagecache import cached_pages


def test_the_whole_file_is_read_ahead(tmp_path: Path) -> None:
    path = tmp_path / "previous-blob"
    size = 96 << 20
    path.write_bytes(random.Random(7).randbytes(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # (clean pages: DONTNEED drops them)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert cached_pages(fd, size) < size // 4096 // 2
        prefetch(path)
        deadline = time.monotonic() + 30
        while cached_pages(fd, size) < size // 4096 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cached_pages(fd, size) == size // 4096
    finally:
        os.close(fd)


def test_a_missing_file_is_no_error(tmp_path: Path) -> None:
    prefetch(tmp_path / "gone")  # (the layer write reports what it must)
