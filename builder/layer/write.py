"""write_layer: a dir (an overlay upper dir or a plain rootfs) -> a deterministic layer blob.

The stream: tar bytes -> sha256 (diff_id) -> compressor -> sha256 (digest) + size -> out,
the walk in the caller's thread and the rest in a writer thread (see _Pipeline). Nothing is
held in memory beyond a few buffers of about a megabyte.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import threading
from pathlib import Path

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.layer import tarwrite as tw
from builder.layer import whiteout as wh
from builder.layer.compression import Compressor, Sink, compressor
from builder.layer.tree import Visit, walk
from builder.layer.xattrs import read_named, xattr_names
from builder.record import dataclass

_FLUSH = 1 << 20  # bytes of tar gathered before one hand-off (amortises call overhead)
_READ = 1 << 20


@dataclass(frozen=True)
class LayerDigests:
    diff_id: Digest  # sha256 of the uncompressed tar (goes in the image config)
    digest: Digest  # sha256 of the blob as written (goes in the manifest)
    size: int  # bytes of the blob
    media_type: MediaType


class _CountingHasher:
    """The last stage: hash and count what the compressor emits, then pass it to `out`."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> object:
        self.hash.update(data)
        self.size += len(data)
        done = self.out.write(data)
        if isinstance(done, int) and done < len(data):
            # A raw file writes short when the disk fills (the next write raises ENOSPC);
            # the bytes left over must not be dropped without a word.
            while done < len(data):
                more = self.out.write(data[done:])
                if not isinstance(more, int) or more <= 0:
                    raise OSError(errno.EIO, "the layer's sink stopped taking bytes")
                done += more
        return len(data)


class _Pipeline:
    """Hash (the diff_id), compress and write the tar in a thread of their own, while the
    caller's thread walks the tree and builds the next chunk: hashlib and zstandard release
    the GIL, and zstd's own workers compress. Chunks pass by a bounded queue, so memory
    stays a few megabytes. A failure here (a full disk) is raised as itself to the caller
    at its next put or at finish."""

    def __init__(self, comp: Compressor) -> None:
        self.tar_hash = hashlib.sha256()
        self._comp = comp
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)  # None: the end
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="layer-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                break
            if self._error is not None:
                continue  # failed: drain, so the producer never blocks on a full queue
            try:
                self.tar_hash.update(chunk)
                self._comp.write(chunk)
            except BaseException as err:  # handed to the caller's thread
                self._error = err
        if self._error is None:
            try:
                self._comp.close()
            except BaseException as err:
                self._error = err

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def finish(self) -> None:
        """End the stream: the compressor is closed, every byte is in the sink."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def write_layer(
    src: Path,
    out: Sink,
    compression: Compression = Compression.ZSTD,
    *,
    mtime_clamp: int | None = None,
    level: int | None = None,
) -> LayerDigests:
    """Write the layer tar of `src` (whiteouts converted to OCI form) compressed into `out`.

    Entries are in depth-first order with siblings sorted by name (as `tar --sort=name`),
    so parents precede children. `mtime_clamp` (SOURCE_DATE_EPOCH) caps every mtime.
    """
    blob = _CountingHasher(out)
    pipe = _Pipeline(compressor(blob, compression, level))
    try:
        _write_tar(src, pipe, mtime_clamp)
        pipe.finish()
    finally:
        pipe.stop()
    return LayerDigests(
        diff_id=Digest.from_hash(pipe.tar_hash),
        digest=Digest.from_hash(blob.hash),
        size=blob.size,
        media_type=MediaType.for_layer(compression),
    )


def _write_tar(src: Path, pipe: _Pipeline, mtime_clamp: int | None) -> None:
    """Walk `src` and put its tar stream into `pipe`, in chunks of about _FLUSH bytes.

    The per-entry work is kept to what the bytes need, since a layer of 50,000 small files
    is bound by it: one lstat (the walk's), one open and one flistxattr on that fd for a
    regular file (the xattr calls of other kinds go through /proc, by name), one read, and
    a ustar header built in one pass when no PAX record is needed. A file system that
    cannot hold xattrs is asked once, not once per entry.
    """
    buf = bytearray()
    links: dict[tuple[int, int], bytes] = {}
    no_xattrs: set[int] = set()  # st_dev of file systems that refused listxattr
    clamp = _NO_CLAMP if mtime_clamp is None else mtime_clamp
    # Locals: the loop below runs once per entry.
    header, padding, regtype = tw.header, tw.padding, tw.REGTYPE
    os_open, read, listxattr, is_reg = os.open, os.read, os.listxattr, stat.S_ISREG
    # The walk is iterative and reaches entries by name from one open dir (any depth, any
    # path length). Reading errors are the source's; writing errors (a full disk) are not
    # caught here, so they reach the caller as what they are.
    try:
        visits = walk(src)
        visit = next(visits, None)
    except OSError as err:
        raise LayerError(f"cannot read layer source {src}: {err.strerror}") from None
    while visit is not None:
        st = visit.st
        mode = st.st_mode
        mtime = min(max(int(st.st_mtime), 0), clamp)
        name = visit.path
        if is_reg(mode) and (st.st_nlink == 1 or (st.st_dev, st.st_ino) not in links):
            try:
                fd = os_open(visit.name, _FILE_FLAGS, dir_fd=visit.dir_fd)
            except OSError as err:
                raise LayerError(f"cannot read {os.fsdecode(name)}: {err.strerror}") from None
            try:
                if st.st_dev in no_xattrs:
                    xattrs = _NONE
                else:
                    try:  # inline: the common answer, none
                        xattrs = _xattrs(fd, st.st_dev, no_xattrs, name) if listxattr(fd) else _NONE
                    except OSError:  # again, through the one place that knows the errors
                        xattrs = _xattrs(fd, st.st_dev, no_xattrs, name)
                whiteout = (xattrs or visit.name.startswith(_WH)) and _special(
                    visit, xattrs, mtime, buf
                )
                if not whiteout:
                    size = st.st_size
                    if st.st_nlink > 1:
                        links[st.st_dev, st.st_ino] = name
                    if xattrs:
                        buf += header(name, regtype, mode, st.st_uid, st.st_gid, size, mtime,
                                      xattrs=_kept(xattrs))  # fmt: skip
                    else:
                        buf += header(name, regtype, mode, st.st_uid, st.st_gid, size, mtime)
                    if size:
                        # A small file in one read; a big one (or a short read) in chunks.
                        data = read(fd, size) if size < _FLUSH else b""
                        buf += data
                        if len(data) < size:
                            _copy_file(fd, name, size - len(data), buf, pipe)
                        buf += padding(size)
            finally:
                os.close(fd)
        else:
            target = visit.proc_path
            xattrs = _xattrs(target, st.st_dev, no_xattrs, name)
            if not _special(visit, xattrs, mtime, buf):
                _other(visit, xattrs, mtime, buf, links)
        if len(buf) >= _FLUSH:
            pipe.put(bytes(buf))  # a copy of a megabyte costs less than a call per entry
            buf.clear()
        last = name
        try:
            visit = next(visits, None)
        except OSError as err:
            raise LayerError(f"cannot read below {os.fsdecode(last)}: {err.strerror}") from None
    buf += tw.END_OF_ARCHIVE
    pipe.put(bytes(buf))


_NO_CLAMP = 1 << 62
_NONE: dict[str, bytes] = {}  # no xattrs (shared, never changed)
_WH = wh.WHITEOUT_PREFIX.encode()
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def _xattrs(target: bytes | int, dev: int, no_xattrs: set[int], name: bytes) -> dict[str, bytes]:
    if dev in no_xattrs:
        return {}
    try:
        names = xattr_names(target)
        if names is None:
            no_xattrs.add(dev)
            return {}
        return read_named(target, names) if names else {}
    except OSError as err:
        raise LayerError(f"cannot read {os.fsdecode(name)}: {err.strerror}") from None


def _kept(xattrs: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The xattrs a layer carries: all but overlayfs' own, sorted."""
    return sorted((k, v) for k, v in xattrs.items() if not wh.is_overlay_xattr(k))


def _special(visit: Visit, xattrs: dict[str, bytes], mtime: int, buf: bytearray) -> bool:
    """Refuse what a layer cannot hold; write an overlay whiteout in its OCI form. True
    when the entry is done (a whiteout)."""
    name, st = visit.path, visit.st
    feature = wh.unrepresentable(xattrs)
    if feature is not None:
        raise LayerError(
            f"{os.fsdecode(name)}: overlayfs {feature} cannot be expressed in a layer "
            f"(mount the overlay with {feature}{'_dir' if feature == 'redirect' else ''}=off)"
        )
    if wh.is_overlay_whiteout(st, xattrs):
        prefix = name[: len(name) - len(visit.name)]
        whiteout = prefix + _WH + visit.name
        buf += tw.header(whiteout, tw.REGTYPE, 0o600, st.st_uid, st.st_gid, 0, mtime)
        return True
    if visit.name.startswith(_WH):
        raise LayerError(
            f"{os.fsdecode(name)}: a file named '{wh.WHITEOUT_PREFIX}*' cannot be stored "
            "in a layer (OCI reserves the prefix for deletions)"
        )
    return False


def _other(
    visit: Visit,
    xattrs: dict[str, bytes],
    mtime: int,
    buf: bytearray,
    links: dict[tuple[int, int], bytes],
) -> None:
    """Every entry but a regular file's first link."""
    name, st = visit.path, visit.st
    mode = st.st_mode
    kept = _kept(xattrs) if xattrs else ()
    perm = stat.S_IMODE(mode)
    if stat.S_ISDIR(mode):
        buf += tw.header(name + b"/", tw.DIRTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                         xattrs=kept)  # fmt: skip
        if wh.is_overlay_opaque(xattrs):
            buf += tw.header(name + b"/" + wh.OPAQUE_MARKER.encode(), tw.REGTYPE,
                             perm & 0o777, st.st_uid, st.st_gid, 0, mtime)  # fmt: skip
    elif stat.S_ISREG(mode):  # a further link to a file already written
        buf += tw.header(name, tw.LNKTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                         links[st.st_dev, st.st_ino], xattrs=kept)  # fmt: skip
    elif stat.S_ISLNK(mode):
        target = os.readlink(visit.name, dir_fd=visit.dir_fd)
        buf += tw.header(name, tw.SYMTYPE, perm, st.st_uid, st.st_gid, 0, mtime, target,
                         xattrs=kept)  # fmt: skip
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = tw.CHRTYPE if stat.S_ISCHR(mode) else tw.BLKTYPE
        buf += tw.header(name, kind, perm, st.st_uid, st.st_gid, 0, mtime,
                         devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                         xattrs=kept)  # fmt: skip
    elif stat.S_ISFIFO(mode):
        buf += tw.header(name, tw.FIFOTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                         xattrs=kept)  # fmt: skip
    # Sockets are left out, as tar and docker do: a socket is only meaningful while its
    # process lives, and the format has no type for it.


def _copy_file(fd: int, name: bytes, size: int, buf: bytearray, pipe: _Pipeline) -> None:
    """Append exactly `size` bytes of the open file to the stream: a small file's into
    `buf`; a big one's read chunks go to the pipe as they are, after what `buf` holds."""
    big = size >= _FLUSH
    if big and buf:
        pipe.put(bytes(buf))
        buf.clear()
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, _READ))
        if not chunk:
            raise LayerError(f"{os.fsdecode(name)} shrank while it was being archived")
        remaining -= len(chunk)
        if big:
            pipe.put(chunk)
        else:
            buf += chunk
