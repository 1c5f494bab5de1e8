"""Blobs: the store protocol that pull, push, build and export share; a writer that hashes
as it goes, a reader that verifies at EOF."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import io
import mmap
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.store.atomic import fsync_dir

# What every corruption message ends with: fsck finds all the damage, --repair drops it.
FSCK_HINT = "; run `builder fsck` (then `builder fsck --repair`, and pull or build again)"


class BlobStore(Protocol):
    """Content-addressed blobs. Readers verify: a blob read to its end that does not hash to
    its digest raises StoreError, so nothing corrupt leaves the store unnoticed."""

    def writer(self) -> AbstractContextManager[BlobWriter]:
        """Stream a blob in, then commit() it; uncommitted bytes vanish on exit."""
        ...

    def put(self, data: bytes, media_type: MediaType | str) -> Descriptor: ...

    def open(self, digest: Digest) -> BinaryIO: ...

    def read(self, digest: Digest) -> bytes: ...

    def stat(self, digest: Digest) -> int | None:
        """The blob's size, or None if it is not there."""
        ...

    def delete(self, digest: Digest) -> int:
        """Remove the blob; returns the bytes freed (0 if it was not there)."""
        ...

    def digests(self) -> Iterator[Digest]: ...


class BlobWriter:
    """Write a blob's bytes, then commit() it under its digest. Made by a BlobStore's writer()."""

    def __init__(self, tmp_path: Path, blobs_dir: Path) -> None:
        self._tmp = tmp_path
        self._blobs = blobs_dir
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._fd = os.open(tmp_path, flags, 0o644)  # closed in commit/abort; -1 then
        self._out: _Appender | None = _Appender(self._fd, tmp_path)
        self._hash = hashlib.sha256()
        self._size = 0
        self._sealed = False
        # Once a range is copied, it and every byte after it are read (a range) and
        # appended in order on the copier's thread, and hashed in order on another.
        self._copier: _Copier | None = None
        self.descriptor: Descriptor | None = None

    def write(self, data: bytes, /) -> int:
        if self._fd < 0:
            raise ValueError("write to a committed or aborted blob")
        self._size += len(data)
        if self._copier is not None:  # after a copied range: in order, behind it
            self._copier.put(bytes(data))
            return len(data)
        assert self._out is not None
        self._hash.update(data)
        self._out.append(data)
        return len(data)

    def copy_range(self, src_fd: int, offset: int, length: int) -> None:
        """Append `length` bytes of the file `src_fd` from `offset` (a previous blob's frames,
        layer/frames): read and appended by the copier's thread and hashed by another,
        beside the layer writer and the next step. ValueError if the file is shorter.

        A rebuilt layer's copied frames are most of it (220 MB for big-context). Copied by
        the kernel (copy_file_range) they went through the page cache: the CPU of fresh
        pages (see _Appender) and, at the commit, the fsync's writes, most of the time from
        a big-context rebuild's last step to its reply. Here they are read by direct I/O
        (the previous blob was written so: its bytes are not in the page cache) into
        buffers of ours, hashed from them and appended by direct I/O.
        """
        if self._fd < 0:
            raise ValueError("write to a committed or aborted blob")
        if not length:
            return
        if os.fstat(src_fd).st_size < offset + length:
            raise ValueError(f"a range to copy ({offset}+{length}) is past the file's end")
        if self._copier is None:
            assert self._out is not None
            self._copier = _Copier(self._out, self._hash)
            self._out = None  # (the copier's from now on)
        # A dup: the caller closes its fd once the layer is written, maybe before the copy.
        self._copier.put((os.dup(src_fd), offset, length))
        self._size += length

    @property
    def digest(self) -> Digest:
        self._drain()
        return Digest.from_hash(self._hash)

    @property
    def size(self) -> int:
        return self._size

    def _drain(self) -> None:
        """Every byte hashed and in the file (the copier joined: its error raised)."""
        if self._copier is not None:
            copier, self._copier = self._copier, None
            self._out = copier.finish()

    def seal(self, media_type: MediaType | str) -> Descriptor:
        """The blob's descriptor, once every byte is written; `commit()` (which may run on
        another thread, store/finishing) then makes it durable and puts it in place."""
        if self._fd < 0:
            raise ValueError("blob already committed or aborted")
        self._drain()
        if self._out is not None:
            self._out.finish()
        self._sealed = True
        self.descriptor = Descriptor(media_type, self.digest, self._size)
        return self.descriptor

    def commit(self, media_type: MediaType | str) -> Descriptor:
        """fsync, then rename into blobs/sha256/<hex>; a blob already there is kept (same bytes)."""
        if self._fd < 0:
            raise ValueError("blob already committed or aborted")
        try:
            self._drain()  # (its error, e.g. ENOSPC, is the commit's)
            if self._out is not None:
                self._out.finish()
            os.fchmod(self._fd, 0o644)  # (whatever the umask made of it)
            os.fsync(self._fd)
        finally:
            self._close()
        digest = self.digest
        # Renamed over a blob already there: these bytes hash to the digest, that file may
        # not (a flipped byte on disk). So writing a blob again heals it — a cached rebuild
        # re-tagging an image whose config was corrupt leaves a sound config — and never
        # keeps a corrupt copy. A reader holding the old file keeps reading the old inode.
        os.rename(self._tmp, self._blobs / digest.hex)
        fsync_dir(self._blobs)
        self.descriptor = Descriptor(media_type, digest, self._size)
        return self.descriptor

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def abort(self, *, sealed_too: bool = False) -> None:
        """Drop the blob. A sealed one is another thread's to commit (store/finishing):
        left alone unless `sealed_too`."""
        if self._sealed and not sealed_too:
            return
        if self._copier is not None:
            copier, self._copier = self._copier, None
            self._out = copier.stop()
        self._close()
        self._tmp.unlink(missing_ok=True)


# A blob's bytes are staged in chunks of this size (a multiple of any file system's block),
# each written by direct I/O where the file system takes it.
CHUNK = 4 << 20
_ALIGN = 4096  # offsets and lengths of direct I/O: a page (covers 512- and 4096-byte blocks)
# Dirty bytes of a blob written through the page cache (where direct I/O is refused) at
# least this many are sent towards the disk as they come, so its fsync does not start
# from nothing.
WRITE_BACK = 8 << 20
# Bytes written after a copied range that may wait for the copier, at most (then the
# writer waits): a copier slower than the layer writer must not fill the memory.
PENDING_BYTES = 64 << 20


class _Buffers:
    """Page-aligned CHUNK-sized buffers (anonymous maps), kept for the next blob: a fresh
    map's pages cost their first touch again (see _Appender)."""

    KEEP = 8

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._free: list[mmap.mmap] = []

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, CHUNK)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self.KEEP:
                self._free.append(buf)
                return
        with contextlib.suppress(BufferError):  # (a view still held: freed with it)
            buf.close()


_buffers = _Buffers()


class _Appender:
    """A blob's temp file, appended to in order. Bytes are staged in a buffer of ours and
    written a CHUNK at a time by direct I/O (O_DIRECT: to the disk, not through the page
    cache), the tail (a blob's last partial chunk, or a small blob whole) through the
    page cache. Where the file system refuses direct I/O (tmpfs, FUSE), through the page
    cache, each WRITE_BACK sent towards the disk as it comes (sync_file_range).

    Why direct: here (a VM whose host takes back the guest's free pages) each page the
    page cache takes fresh costs its first touch, ~2.7 ms of system time a MB: writing a
    220 MB blob through it took 0.6 s of CPU, by direct I/O 0.1 s, and its commit's fsync
    then finds nothing to write. A blob is read back (push, export, unpack) by
    VerifyingReader, direct too."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd, self._path = fd, path
        self._buf: mmap.mmap | None = None
        self._pos = 0  # staged bytes
        self._at = 0  # the file offset of the staged bytes
        self._direct = -1  # the O_DIRECT fd, opened for the first chunk; -2: refused
        self._written_back = 0

    def append(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self._buf is None:
                self._buf = _buffers.take()
            n = min(len(view), CHUNK - self._pos)
            self._buf[self._pos : self._pos + n] = view[:n]
            self._pos += n
            view = view[n:]
            if self._pos == CHUNK:
                self._put(CHUNK)

    def _put(self, n: int) -> None:
        """The first `n` staged bytes (a multiple of _ALIGN) into the file."""
        assert self._buf is not None
        chunk = memoryview(self._buf)[:n]
        try:
            if self._direct == -1:
                try:
                    self._direct = os.open(self._path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
                except OSError:
                    self._direct = -2
            if self._direct >= 0:
                try:
                    _pwrite_all(self._direct, chunk, self._at)
                except OSError as err:
                    if err.errno != errno.EINVAL:  # (EINVAL: opened, but not for this file)
                        raise
                    os.close(self._direct)
                    self._direct = -2
            if self._direct == -2:
                _pwrite_all(self._fd, chunk, self._at)
                if self._at + n - self._written_back >= WRITE_BACK:
                    _sync_file_range(
                        self._fd, self._written_back, self._at + n - self._written_back
                    )
                    self._written_back = self._at + n
        finally:
            chunk.release()
        self._at += n
        self._pos -= n
        if self._pos:  # (only a finish() puts fewer bytes than are staged)
            self._buf[: self._pos] = self._buf[n : n + self._pos]

    def finish(self) -> None:
        """Every staged byte into the file (the aligned part direct where it was so far)."""
        if self._pos >= _ALIGN and self._direct >= 0:
            self._put(self._pos - self._pos % _ALIGN)
        if self._pos and self._buf is not None:
            with memoryview(self._buf) as view:
                _pwrite_all(self._fd, view[: self._pos], self._at)
            self._at += self._pos
            self._pos = 0
        self.close()

    def close(self) -> None:
        """Let go of the buffer and the direct fd (staged bytes not finished are dropped)."""
        if self._direct >= 0:
            os.close(self._direct)
            self._direct = -2
        if self._buf is not None:
            buf, self._buf = self._buf, None
            _buffers.give(buf)


def _pwrite_all(fd: int, data: memoryview, at: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], at + done)


def _read_range(
    src_fd: int, offset: int, length: int, bufs: list[mmap.mmap], ready: Callable[[int], None]
) -> Generator[tuple[int, memoryview], None, None]:
    """The bytes of `src_fd` from `offset` on, `length` of them, in chunks read into `bufs`
    in turn (`ready(k)` is called before bufs[k] is read into again): (k, a view of the
    chunk in bufs[k]). By direct I/O, aligned reads around the range, where the file
    system allows it; else by reads through the page cache."""
    direct = -1
    with contextlib.suppress(OSError):  # (a file system without direct I/O: read below)
        direct = os.open(f"/proc/self/fd/{src_fd}", os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    try:
        end = offset + length
        at = offset
        turn = 0
        while at < end:
            k = turn % len(bufs)
            ready(k)
            view = memoryview(bufs[k])
            try:
                if direct >= 0:
                    start = at - at % _ALIGN
                    want = min(CHUNK, -(-end // _ALIGN) * _ALIGN - start)
                    try:
                        got = os.preadv(direct, [view[:want]], start)
                    except OSError as err:
                        if err.errno != errno.EINVAL:
                            raise
                        os.close(direct)
                        direct = -1
                        continue
                    skip = at - start
                    n = min(got - skip, end - at)
                else:
                    skip = 0
                    n = os.preadv(src_fd, [view[: min(CHUNK, end - at)]], at)
                if n <= 0:
                    raise OSError(errno.EIO, "a range of a blob came out short")
                yield k, view[skip : skip + n]
                at += n
                turn += 1
            finally:
                view.release()
    finally:
        if direct >= 0:
            os.close(direct)


Range = tuple[int, int, int]  # a dup of a file's fd (the copier closes it), offset, length


def _copy_range(src_fd: int, offset: int, length: int, hasher: _Hasher, out: _Appender) -> None:
    """A range of `src_fd`, appended here and hashed by `hasher`'s thread meanwhile: the
    next chunk is read (into the other buffer) and the last one written while the hasher
    takes the one before (reads and writes wait on the disk, the hash on a core)."""
    bufs = [_buffers.take(), _buffers.take()]
    given = [0, 0]  # the hasher's number of the chunk each buffer holds

    def ready(k: int) -> None:  # the hasher is done with what bufs[k] holds
        hasher.wait_for(given[k])

    chunk = None
    try:
        for k, chunk in _read_range(src_fd, offset, length, bufs, ready):
            out.append(chunk)
            given[k] = hasher.update(chunk)
    finally:
        chunk = None  # (a view of a buffer: none may outlive its return to the pool)
        hasher.wait_for(max(given))  # (nothing of ours is hashed once we give them back)
        for buf in bufs:
            _buffers.give(buf)


class _Copier:
    """Takes a blob's appender and hash from the first copied range on: reads and appends
    the ranges and the written bytes, in order, on a thread of its own, and has them hashed
    in order on another (_Hasher). `finish()`
    waits, raises what the copy raised and hands the appender back; `stop()` drops what is
    left. At most PENDING_BYTES of written bytes wait for it."""

    def __init__(self, out: _Appender, hash: Any) -> None:
        import collections
        import threading

        self._out, self._hasher = out, _Hasher(hash)
        self._items: collections.deque[Range | bytes | None] = collections.deque()
        self._waiting = 0  # written bytes in _items
        self._cond = threading.Condition()
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="blob-copier", daemon=True)
        self._thread.start()

    def put(self, item: Range | bytes) -> None:
        with self._cond:
            if isinstance(item, bytes):
                self._cond.wait_for(lambda: self._waiting < PENDING_BYTES or self._stopped)
                self._waiting += len(item)
            if self._stopped:  # after a failure: dropped (finish() raises it)
                _close(item)
                return
            self._items.append(item)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items))
                item = self._items.popleft()
                if isinstance(item, bytes):
                    self._waiting -= len(item)
                    self._cond.notify_all()
            if item is None:
                return
            try:
                if self._error is None and not self._stopped:
                    if isinstance(item, bytes):
                        self._hasher.update(item)
                        self._out.append(item)
                    else:
                        _copy_range(*item, self._hasher, self._out)
            except BaseException as err:  # raised by finish(): by the seal or the commit
                with self._cond:
                    self._error, self._stopped = err, True
                    self._cond.notify_all()
            finally:
                _close(item)

    def _end(self) -> _Appender:
        with self._cond:
            self._items.append(None)
            self._cond.notify_all()
        self._thread.join()
        self._hasher.finish()
        return self._out

    def finish(self) -> _Appender:
        out = self._end()
        if self._error is not None:
            out.close()
            raise self._error
        return out

    def stop(self) -> _Appender:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        return self._end()


def _close(item: Range | bytes | None) -> None:
    if isinstance(item, tuple):
        os.close(item[0])


def _sync_file_range(fd: int, offset: int, length: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE): a hint; where libc has none, nothing."""
    libc = _libc()
    if libc is not None:
        libc.sync_file_range(fd, ctypes.c_int64(offset), ctypes.c_int64(length), 2)


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.sync_file_range  # noqa: B018  # (absent on some libcs)
    except (OSError, AttributeError):
        return None
    return libc


# A blob at least this big is hashed on a thread of its own while its reader uses the bytes
# (hashlib releases the GIL): a push sends one chunk while the thread hashes the last, where
# hashing in line cost a 200 MB push about 0.4 s. A smaller one is hashed in line: the
# thread would cost more than it saves.
BACKGROUND_HASH = 8 << 20


class _Hasher:
    """Hashes, on its own thread and in order, the chunks it is given; at most a few
    chunks wait (the reader blocks rather than reading the blob into memory ahead)."""

    def __init__(self, hash: hashlib._Hash) -> None:
        import queue
        import threading

        # A few reads' worth (a push reads 4 MiB at a time): room for the two threads'
        # turns on a busy machine, and no more memory than that.
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=8)
        self._given = self._done = 0  # chunks queued, chunks hashed
        self._done_cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(hash,), name="verify", daemon=True)
        self._thread.start()

    def _run(self, hash: hashlib._Hash) -> None:
        while (chunk := self._queue.get()) is not None:
            hash.update(chunk)
            del chunk  # (a view of a buffer: let go before the buffer's owner reuses it)
            with self._done_cond:
                self._done += 1
                self._done_cond.notify_all()

    def update(self, chunk: bytes | memoryview) -> int:
        """Queue `chunk`; returns its number (see wait_for). A view's buffer must hold its
        bytes until then."""
        self._queue.put(chunk)
        self._given += 1
        return self._given

    def wait_for(self, number: int) -> None:
        """Return once the chunk `number` (and every one before it) is hashed."""
        with self._done_cond:
            self._done_cond.wait_for(lambda: self._done >= number)

    def finish(self) -> None:
        """Wait until every chunk given is hashed (and stop the thread)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class VerifyingReader(io.RawIOBase):
    """Reads a blob file and raises StoreError at EOF if its bytes do not match the digest."""

    def __init__(self, path: Path, digest: Digest) -> None:
        super().__init__()
        try:
            self._f = open(path, "rb", buffering=0)  # noqa: SIM115  # closed in close()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is missing from the store{FSCK_HINT}") from None
        self._digest = digest
        self._hash = digest.hasher()
        self._verified = False
        size = os.fstat(self._f.fileno()).st_size
        big = size >= BACKGROUND_HASH
        self._hasher = _Hasher(self._hash) if big else None
        # A big blob is read by direct I/O (written so, its bytes are not in the page
        # cache, whose fresh pages cost CPU here: see _Appender).
        self._direct = _DirectReader(self._f.fileno(), size) if big else None

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = self._direct.readinto(buf) if self._direct is not None else self._f.readinto(buf)
        if n:
            if self._hasher is not None:
                self._hasher.update(bytes(buf[:n]))  # a copy: the caller reuses `buf`
            else:
                self._hash.update(buf[:n])
        elif not self._verified:
            if self._hasher is not None:
                self._hasher.finish()
            got = Digest.from_hash(self._hash)
            if got != self._digest:
                raise StoreError(
                    f"blob {self._digest} is corrupt (content hashes to {got}){FSCK_HINT}"
                )
            self._verified = True
        return n or 0

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.finish()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        self._f.close()
        super().close()


class _DirectReader:
    """A file read from its start to `size`, a CHUNK at a time into a buffer of ours
    (_read_range: by direct I/O where the file system allows it), handed out in the sizes
    asked for."""

    def __init__(self, fd: int, size: int) -> None:
        self._buf: mmap.mmap | None = _buffers.take()
        self._chunks = _read_range(fd, 0, size, [self._buf], lambda _k: None)
        self._left = memoryview(b"")  # of the chunk read last, what is not handed out yet

    def readinto(self, buf: memoryview) -> int:
        if not self._left:
            self._left = memoryview(b"")  # (no view of the buffer while it is read into)
            self._left = next(self._chunks, (0, memoryview(b"")))[1]
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        self._left = memoryview(b"")
        self._chunks.close()
        if self._buf is not None:
            buf, self._buf = self._buf, None
            _buffers.give(buf)


def open_verified(path: Path, digest: Digest) -> BinaryIO:
    return io.BufferedReader(VerifyingReader(path, digest), buffer_size=1 << 20)
