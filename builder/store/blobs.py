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
        # Copied ranges (a dup of their file's fd, offset, length), and the bytes written
        # after them, not in the file yet: put there by the commit (see copy_range).
        self._pending: list[tuple[int, int, int] | bytes] = []
        self._pending_bytes = 0  # of the written bytes held there
        self.descriptor: Descriptor | None = None

    def write(self, data: bytes, /) -> int:
        if self._file is None:
            raise ValueError("write to a committed or aborted blob")
        if self._hasher is not None:  # in order, after the copied ranges it is hashing
            self._hasher.update(data if isinstance(data, bytes) else bytes(data))
        else:
            self._hash.update(data)
        self._size += len(data)
        if self._pending:  # after a copied range: in order, behind it
            self._pending.append(bytes(data))
            self._pending_bytes += len(data)
            if self._pending_bytes >= PENDING_BYTES:
                self._put_pending()
            return len(data)
        self._file.write(data)
        if self._size - self._flushed >= WRITE_BACK:
            self._file.flush()
            self._write_back()
        return len(data)

    def copy_range(self, src_fd: int, offset: int, length: int) -> None:
        """Append `length` bytes of the file `src_fd` from `offset` (a previous blob's frames,
        layer/frames): hashed now where they lie (mapped, not read into Python), put in
        the file by the commit. ValueError if the file is shorter.

        The digest does not need the bytes in the file, and a rebuilt layer's copied
        frames are most of it (220 MB for big-context): copied through the page cache they
        cost 0.3-0.5 s of CPU in ext4's buffered write path on this VM (fresh page-cache
        pages are dear under the host's free-page reporting), which the layer writer's
        thread paid on the build's critical path, beside the two hashes. The commit
        (store/finishing: behind the next steps) copies them instead. Bytes written after
        a copied range wait with it, up to PENDING_BYTES.
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
        # A dup: the caller closes its fd once the layer is written, before the commit.
        self._pending.append((os.dup(src_fd), offset, length))
        self._size += length
        self._flushed = self._size  # (no write-back hint: see _put_pending)

    def _put_pending(self) -> None:
        """Put the copied ranges, and the bytes written after them, in the file in order."""
        assert self._file is not None
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        pending.reverse()  # (popped from the end)
        try:
            self._file.flush()
            at = self._file.tell()
            dst = self._file.fileno()
            while pending:
                item = pending.pop()
                if isinstance(item, bytes):
                    self._file.write(item)
                    self._file.flush()
                    at += len(item)
                    continue
                src_fd, offset, length = item
                try:
                    _copy_range(src_fd, offset, length, dst, at)
                finally:
                    os.close(src_fd)
                at += length
                self._file.seek(at)
        finally:
            _close_pending(pending)

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
        self._put_pending()
        f, self._file = self._file, None
        try:
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
        _close_pending(self._pending)
        self._pending, self._pending_bytes = [], 0
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


# copy_file_range's answers for "not between these two files" (another file system, an old
# kernel, a file system without it): the bytes are then copied by reads and writes.
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _copy_range(src_fd: int, offset: int, length: int, dst: int, at: int) -> None:
    """A range at `at`, the end of the file, by copy_file_range (by reads where it
    cannot). No write-back hint: on ext4 it allocates and submits in this thread (0.3 s
    of a 200 MB copy, which itself took 0.12 s); the commit's fsync writes it."""
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


def _close_pending(pending: list[tuple[int, int, int] | bytes]) -> None:
    for item in pending:
        if not isinstance(item, bytes):
            os.close(item[0])


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
# Bytes written after a copied range that wait for the commit with it, at most (then they
# and the ranges before them go into the file at once): a layer whose first frame was
# reused and none after it must not be held in memory.
PENDING_BYTES = 64 << 20


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
