"""DirectCopy: a range of one file appended to a blob being written, by direct I/O.

A rebuilt layer copies its unchanged compressed frames from the previous blob (220 MB for
big-context). Through the page cache (copy_file_range, or write) ext4's buffered write path
cost 0.3-0.5 s of CPU for that here, on the build's critical path, and the commit's fsync
then wrote the whole blob to disk while the next step waited on the journal. Written with
O_DIRECT from a buffer the bytes are read into (0.08 s of CPU), they go to the disk as they
are copied, and the fsync has only the metadata and the tail left.

O_DIRECT wants the file offset, the length and the buffer aligned to the device's block:
the copy starts at the blob's last whole block (its partial tail read back and written
again in front of the range), writes whole blocks, and leaves the range's own partial tail
to a plain write through the page cache. Where direct I/O is refused (a file system
without it, a device with a larger alignment), `append` says so before writing anything and
the caller copies through the page cache instead.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

BLOCK = 4096  # the alignment asked of offsets and lengths (a multiple of any device's 512)
BUFFER = 8 << 20  # bytes read from the source per direct write
MIN_DIRECT = 1 << 20  # shorter ranges go through the page cache (copy_file_range)


class DirectCopy:
    """Appends ranges of other files to the file at `path` (the blob's temp file, whose
    buffered writer has been flushed) with direct I/O. `close()` lets go of the buffer."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1
        self._buf: mmap.mmap | None = None
        self.usable = True  # False once direct I/O was refused: never tried again

    def append(self, src_fd: int, offset: int, length: int, dst_fd: int, at: int) -> bool:
        """Write `length` bytes of `src_fd` from `offset` at `at`, the end of the file
        (`dst_fd`, a plain fd of it, takes the last partial block). False, with nothing
        written, when direct I/O is not to be had; OSError (EIO) if the source is short."""
        if not self.usable:
            return False
        if self._fd < 0:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                self.usable = False
                return False
            self._buf = mmap.mmap(-1, BUFFER)  # page-aligned, as O_DIRECT needs
        assert self._buf is not None
        view = memoryview(self._buf)
        try:
            return self._append(view, src_fd, offset, length, dst_fd, at)
        finally:
            view.release()

    def _append(
        self, view: memoryview, src_fd: int, offset: int, length: int, dst_fd: int, at: int
    ) -> bool:
        base = at - at % BLOCK  # where the next direct write goes
        fill = at - base  # bytes in the buffer, from `base`
        if fill:  # the file's partial last block, read back (a dirty page is written first)
            got = self._read(view[:BLOCK], base)
            if got < 0:
                return False
            if got < fill:
                raise OSError(errno.EIO, "a blob being written came out short")
        wrote = False
        done = 0
        while done < length:
            n = os.preadv(src_fd, [view[fill : fill + min(BUFFER - fill, length - done)]],
                          offset + done)  # fmt: skip
            if n <= 0:
                raise OSError(errno.EIO, "a copied range of a blob came out short")
            done += n
            fill += n
            whole = fill - fill % BLOCK
            if whole and (fill == BUFFER or done == length):
                try:
                    written = os.pwrite(self._fd, view[:whole], base)
                except OSError as err:
                    if err.errno != errno.EINVAL or wrote:
                        raise
                    self.usable = False  # (an alignment larger than BLOCK)
                    return False
                if written != whole:
                    raise OSError(errno.EIO, "a direct write of a blob came out short")
                wrote = True
                base += whole
                view[: fill - whole] = view[whole:fill]  # (under a block: no overlap)
                fill -= whole
        # The range's partial last block, through the page cache.
        if fill and os.pwrite(dst_fd, view[:fill], base) != fill:
            raise OSError(errno.EIO, "a write of a blob came out short")
        return True

    def _read(self, block: memoryview, base: int) -> int:
        try:
            return os.preadv(self._fd, [block], base)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            self.usable = False
            return -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._buf is not None:
            self._buf.close()
            self._buf = None
