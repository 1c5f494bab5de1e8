"""Blobs: the store protocol that pull, push, build and export share; a writer that hashes
as it goes, a reader that verifies at EOF."""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import io
import mmap
import os
from collections.abc import Iterator
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
        self._file: BinaryIO | None = open(tmp_path, "xb")  # noqa: SIM115  # closed in commit/abort
        self._hash = hashlib.sha256()
        self._size = 0
        self._flushed = 0  # bytes whose write-back has been started
        self._sealed = False
        self._hasher: _Hasher | None = None  # once a range is copied (copy_range)
        # Once a range is copied, it and every byte after it go into the file in order
        # on the copier's thread (see copy_range).
        self._copier: _Copier | None = None
        self.descriptor: Descriptor | None = None

    def write(self, data: bytes, /) -> int:
        if self._file is None:
            raise ValueError("write to a committed or aborted blob")
        if self._hasher is not None:  # in order, after the copied ranges it is hashing
            self._hasher.update(data if isinstance(data, bytes) else bytes(data))
        else:
            self._hash.update(data)
        self._size += len(data)
        if self._copier is not None:  # after a copied range: in order, behind it
            self._copier.put(bytes(data))
            return len(data)
        self._file.write(data)
        if self._size - self._flushed >= WRITE_BACK:
            self._file.flush()
            self._write_back()
        return len(data)

    def copy_range(self, src_fd: int, offset: int, length: int) -> None:
        """Append `length` bytes of the file `src_fd` from `offset` (a previous blob's frames,
        layer/frames): hashed now where they lie (mapped, not read into Python), put in
        the file by the copier's thread. ValueError if the file is shorter.

        The digest does not need the bytes in the file, and a rebuilt layer's copied
        frames are most of it (220 MB for big-context): copied through the page cache they
        cost CPU in ext4's buffered write path, which the layer writer's thread paid on
        the build's critical path, beside the two hashes. Left to the commit (behind the
        next steps, but not started before the layer was written), their copy and the
        disk writes of the commit's fsync (0.4-0.5 s for 210 MiB on this disk) were most
        of the time from a big-context rebuild's last step to its reply. The copier
        starts them at once, beside the layer writer and the next step, and starts each
        range's write-back as it is copied: the commit's fsync waits for what is left.
        """
        if self._file is None:
            raise ValueError("write to a committed or aborted blob")
        if not length:
            return
        page = mmap.ALLOCATIONGRANULARITY
        start = offset - offset % page
        mapped = mmap.mmap(src_fd, offset + length - start, prot=mmap.PROT_READ, offset=start)
        if self._hasher is None:  # hashed on a thread beside the copy from now on
            self._hasher = _Hasher(self._hash)
        self._hasher.update(memoryview(mapped)[offset - start :])  # (unmapped when hashed)
        if self._copier is None:
            self._file.flush()
            self._copier = _Copier(self._file.fileno(), self._file.tell())
        # A dup: the caller closes its fd once the layer is written, maybe before the copy.
        self._copier.put((os.dup(src_fd), offset, length))
        self._size += length
        self._flushed = self._size  # (the copier starts the write-back from here on)

    @property
    def digest(self) -> Digest:
        if self._hasher is not None:
            self._hasher.finish()
            self._hasher = None
        return Digest.from_hash(self._hash)

    @property
    def size(self) -> int:
        return self._size

    def seal(self, media_type: MediaType | str) -> Descriptor:
        """The blob's descriptor, once every byte is written; `commit()` (which may run on
        another thread, store/finishing) then makes it durable and puts it in place."""
        if self._file is None:
            raise ValueError("blob already committed or aborted")
        self._file.flush()
        self._sealed = True
        self.descriptor = Descriptor(media_type, self.digest, self._size)
        return self.descriptor

    def _write_back(self) -> None:
        """Start writing what is dirty to the disk now, without waiting (sync_file_range
        WRITE): the fsync at commit then waits for what is left, not for the whole blob."""
        if self._file is not None and self._size - self._flushed >= WRITE_BACK:
            _sync_file_range(self._file.fileno(), self._flushed, self._size - self._flushed)
            self._flushed = self._size

    def commit(self, media_type: MediaType | str) -> Descriptor:
        """fsync, then rename into blobs/sha256/<hex>; a blob already there is kept (same bytes)."""
        if self._file is None:
            raise ValueError("blob already committed or aborted")
        f, self._file = self._file, None
        try:
            if self._copier is not None:
                copier, self._copier = self._copier, None
                copier.finish()  # (its error, e.g. ENOSPC, is the commit's)
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        digest = self.digest
        # Renamed over a blob already there: these bytes hash to the digest, that file may
        # not (a flipped byte on disk). So writing a blob again heals it — a cached rebuild
        # re-tagging an image whose config was corrupt leaves a sound config — and never
        # keeps a corrupt copy. A reader holding the old file keeps reading the old inode.
        os.chmod(self._tmp, 0o644)
        os.rename(self._tmp, self._blobs / digest.hex)
        fsync_dir(self._blobs)
        self.descriptor = Descriptor(media_type, digest, self._size)
        return self.descriptor

    def abort(self, *, sealed_too: bool = False) -> None:
        """Drop the blob. A sealed one is another thread's to commit (store/finishing):
        left alone unless `sealed_too`."""
        if self._sealed and not sealed_too:
            return
        if self._hasher is not None:
            self._hasher.finish()
            self._hasher = None
        if self._copier is not None:
            copier, self._copier = self._copier, None
            copier.stop()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


# copy_file_range's answers for "not between these two files" (another file system, an old
# kernel, a file system without it): the bytes are then copied by reads and writes.
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _copy_range(src_fd: int, offset: int, length: int, dst: int, at: int) -> None:
    """A range at `at`, the end of the file, by copy_file_range (by reads where it
    cannot)."""
    os.lseek(dst, at, os.SEEK_SET)
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src_fd, dst, length - done, offset + done)
        except OSError as err:
            if err.errno not in _NO_COPY_RANGE:
                raise
            n = _copy_by_reads(src_fd, dst, offset + done, length - done)
        if not n:
            raise OSError(errno.EIO, "a copied range of a blob came out short")
        done += n


def _copy_by_reads(src_fd: int, dst_fd: int, offset: int, length: int) -> int:
    """Up to `length` bytes of `src_fd` from `offset`, appended to `dst_fd`; how many."""
    done = 0
    while done < length:
        data = os.pread(src_fd, min(length - done, 4 << 20), offset + done)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(dst_fd, view) :]
        done += len(data)
    return done


# Dirty bytes of a blob at least this many are sent towards the disk as they come (a rebuilt
# layer copies its unchanged frames in runs of 16 MiB), so its fsync does not start from
# nothing: it was 0.4 s of a 220 MB blob, on the build's critical path.
WRITE_BACK = 8 << 20
# Bytes written after a copied range that may wait for the copier, at most (then the
# writer waits): a copier slower than the layer writer must not fill the memory.
PENDING_BYTES = 64 << 20

Range = tuple[int, int, int]  # a dup of a file's fd (the copier closes it), offset, length


class _Copier:
    """Puts copied ranges and written bytes, in order, into a blob's temp file from
    `at` on, on a thread of its own; starts their write-back as they go in (a hint, as
    BlobWriter._write_back). `finish()` waits and raises what the copy raised; `stop()`
    drops what is left. At most PENDING_BYTES of written bytes wait for it."""

    def __init__(self, fd: int, at: int) -> None:
        import collections
        import threading

        self._fd = fd
        self._at = at
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
        flushed = self._at
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
                    self._at += self._put(item)
                    if self._at - flushed >= WRITE_BACK:
                        _sync_file_range(self._fd, flushed, self._at - flushed)
                        flushed = self._at
            except BaseException as err:  # raised by finish(), in the commit
                with self._cond:
                    self._error, self._stopped = err, True
                    self._cond.notify_all()
            finally:
                _close(item)

    def _put(self, item: Range | bytes) -> int:
        if isinstance(item, bytes):
            done = 0
            while done < len(item):
                done += os.pwrite(self._fd, memoryview(item)[done:], self._at + done)
            return len(item)
        src_fd, offset, length = item
        _copy_range(src_fd, offset, length, self._fd, self._at)
        return length

    def _end(self) -> None:
        with self._cond:
            self._items.append(None)
            self._cond.notify_all()
        self._thread.join()

    def finish(self) -> None:
        self._end()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._end()


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
        self._thread = threading.Thread(target=self._run, args=(hash,), name="verify", daemon=True)
        self._thread.start()

    def _run(self, hash: hashlib._Hash) -> None:
        while (chunk := self._queue.get()) is not None:
            hash.update(chunk)
            del chunk  # (a mapped range is unmapped once nothing holds it)

    def update(self, chunk: bytes | memoryview) -> None:
        self._queue.put(chunk)

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
        big = os.fstat(self._f.fileno()).st_size >= BACKGROUND_HASH
        self._hasher = _Hasher(self._hash) if big else None

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = self._f.readinto(buf)
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
        self._f.close()
        super().close()


def open_verified(path: Path, digest: Digest) -> BinaryIO:
    return io.BufferedReader(VerifyingReader(path, digest), buffer_size=1 << 20)
