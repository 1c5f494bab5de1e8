"""write_layer: a dir (an overlay upper dir or a plain rootfs) -> a deterministic layer blob.

The stream: tar bytes -> sha256 (diff_id) -> compressor -> sha256 (digest) + size -> out.
Nothing is held in memory beyond one buffer of about a megabyte.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.layer import tarwrite as tw
from builder.layer import whiteout as wh
from builder.layer.compression import Sink, compressor
from builder.layer.tree import Visit, walk
from builder.layer.xattrs import read_xattrs

_FLUSH = 1 << 20  # bytes of tar gathered before one compressor call (amortises call overhead)
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
        self.out.write(data)
        return len(data)


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
    tar_hash = hashlib.sha256()
    blob = _CountingHasher(out)
    comp = compressor(blob, compression, level)
    buf = bytearray()

    def flush() -> None:
        if buf:
            data = bytes(buf)
            buf.clear()
            tar_hash.update(data)
            comp.write(data)

    def mtime_of(st: os.stat_result) -> int:
        m = max(int(st.st_mtime), 0)
        return m if mtime_clamp is None else min(m, mtime_clamp)

    links: dict[tuple[int, int], bytes] = {}

    def entry(visit: Visit, xattrs: dict[str, bytes]) -> None:
        name, st = visit.path, visit.st
        feature = wh.unrepresentable(xattrs)
        if feature is not None:
            raise LayerError(
                f"{os.fsdecode(name)}: overlayfs {feature} cannot be expressed in a layer "
                f"(mount the overlay with {feature}{'_dir' if feature == 'redirect' else ''}=off)"
            )
        mode = st.st_mode
        mtime = mtime_of(st)
        if wh.is_overlay_whiteout(st, xattrs):
            prefix = name[: len(name) - len(visit.name)]
            whiteout = prefix + wh.WHITEOUT_PREFIX.encode() + visit.name
            buf.extend(tw.header(whiteout, tw.REGTYPE, 0o600, st.st_uid, st.st_gid, 0, mtime))
            return
        if visit.name.startswith(wh.WHITEOUT_PREFIX.encode()):
            raise LayerError(
                f"{os.fsdecode(name)}: a file named '{wh.WHITEOUT_PREFIX}*' cannot be stored "
                "in a layer (OCI reserves the prefix for deletions)"
            )
        kept = sorted((k, v) for k, v in xattrs.items() if not wh.is_overlay_xattr(k))
        perm = stat.S_IMODE(mode)
        if stat.S_ISDIR(mode):
            buf.extend(tw.header(name + b"/", tw.DIRTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                                 xattrs=kept))  # fmt: skip
            if wh.is_overlay_opaque(xattrs):
                buf.extend(tw.header(name + b"/" + wh.OPAQUE_MARKER.encode(), tw.REGTYPE,
                                     perm & 0o777, st.st_uid, st.st_gid, 0, mtime))  # fmt: skip
        elif stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = links.get(key)
                if first is not None:
                    buf.extend(tw.header(name, tw.LNKTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                                         first, xattrs=kept))  # fmt: skip
                    return
                links[key] = name
            size = st.st_size
            buf.extend(tw.header(name, tw.REGTYPE, perm, st.st_uid, st.st_gid, size, mtime,
                                 xattrs=kept))  # fmt: skip
            _copy_file(visit.dir_fd, visit.name, name, size, buf, flush)
            buf.extend(tw.padding(size))
        elif stat.S_ISLNK(mode):
            target = os.readlink(visit.name, dir_fd=visit.dir_fd)
            buf.extend(tw.header(name, tw.SYMTYPE, perm, st.st_uid, st.st_gid, 0, mtime, target,
                                 xattrs=kept))  # fmt: skip
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = tw.CHRTYPE if stat.S_ISCHR(mode) else tw.BLKTYPE
            buf.extend(tw.header(name, kind, perm, st.st_uid, st.st_gid, 0, mtime,
                                 devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                                 xattrs=kept))  # fmt: skip
        elif stat.S_ISFIFO(mode):
            buf.extend(tw.header(name, tw.FIFOTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                                 xattrs=kept))  # fmt: skip
        # Sockets are left out, as tar and docker do: a socket is only meaningful while its
        # process lives, and the format has no type for it.

    # The walk is iterative and reaches entries by name from one open dir (any depth, any
    # path length). Reading errors are the source's; writing errors (a full disk) are not
    # caught here, so they reach the caller as what they are.
    try:
        visits = walk(src)
        visit = next(visits, None)
    except OSError as err:
        raise LayerError(f"cannot read layer source {src}: {err.strerror}") from None
    while visit is not None:
        try:
            xattrs = read_xattrs(visit.proc_path)
        except OSError as err:
            raise LayerError(f"cannot read {os.fsdecode(visit.path)}: {err.strerror}") from None
        entry(visit, xattrs)
        if len(buf) >= _FLUSH:
            flush()
        last = visit.path
        try:
            visit = next(visits, None)
        except OSError as err:
            raise LayerError(f"cannot read below {os.fsdecode(last)}: {err.strerror}") from None
    buf += tw.END_OF_ARCHIVE
    flush()
    comp.close()
    return LayerDigests(
        diff_id=Digest.from_hash(tar_hash),
        digest=Digest.from_hash(blob.hash),
        size=blob.size,
        media_type=MediaType.for_layer(compression),
    )


def _copy_file(
    dir_fd: int, base: bytes, name: bytes, size: int, buf: bytearray, flush: Callable[[], None]
) -> None:
    """Append exactly `size` bytes of the file to `buf`, flushing as it grows."""
    try:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        raise LayerError(f"cannot read {os.fsdecode(name)}: {err.strerror}") from None
    try:
        remaining = size
        while remaining:
            chunk = os.read(fd, min(remaining, _READ))
            if not chunk:
                raise LayerError(f"{os.fsdecode(name)} shrank while it was being archived")
            buf += chunk
            remaining -= len(chunk)
            if len(buf) >= _FLUSH:
                flush()
    finally:
        os.close(fd)
