"""How much of a file the page cache holds (mincore), for the tests of what bypasses or
fills it."""

from __future__ import annotations

import ctypes
import mmap


def cached_pages(fd: int, size: int) -> int:
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
