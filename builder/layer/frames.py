"""A layer blob as a sequence of independent compressed frames, and their reuse.

zstd frames and gzip members concatenate into one valid stream, so a layer is written as a
run of them, cut at tar-entry boundaries chosen by the entries themselves (`Cutter`): an
edit to one file changes the bytes of one frame, and the cuts after it stay where they
were. Each frame is known by the sha256 of its uncompressed bytes (its identity); a
blob's `FrameIndex` lists them with their compressed lengths. A rebuild of the same layer
hands the previous blob and its index to `FramedCompressor`, which copies the compressed
bytes of every frame whose identity it meets again instead of compressing it: the output
is the bytes a full write gives, since a frame's compressed form depends on its
uncompressed bytes and the settings alone (zstd in worker mode, our own gzip header).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.image.fields import FormatError
from builder.image.mediatypes import Compression
from builder.layer.compression import (
    GZIP_LEVEL,
    ZSTD_LEVEL,
    Sink,
    give_back,
    gzip_header,
    zstd_context,
)
from builder.record import dataclass, replace

# Cut points, a function of the tar bytes alone (so that a blob converted from another
# compression, layer/recompress, is cut where a written one is). After MIN_FRAME bytes, an
# entry ends a frame with a probability proportional to its size (the crc of its first
# header block, modulo AVG_FRAME, below its size), so frames average about AVG_FRAME
# whatever the files' sizes; MAX_FRAME bounds a run of entries; a file's data is also cut
# every IN_ENTRY bytes from its own start, so that memory stays bounded and an edit
# elsewhere never moves those cuts. 4 MiB frames cost zstd -3 (a 2 MiB window) and gzip
# (32 KiB) well under 1% of ratio against one frame.
MIN_FRAME = 1 << 20
AVG_FRAME = 4 << 20
MAX_FRAME = 16 << 20
IN_ENTRY = 16 << 20
BLOCK = 512  # a tar block


class Cutter:
    """Decides, at the end of each tar entry, whether the current frame ends there."""

    def __init__(self) -> None:
        self.start = 0  # stream offset where the current frame began
        self.head = b""  # the walker's copy of an entry's first block, when flushed early

    def after_entry(self, head: bytes, entry_start: int, end: int) -> bool:
        """`head`: the entry's first 512-byte block (a PAX header's, if it has one)."""
        run = end - self.start
        if run < MIN_FRAME:
            return False
        if run < MAX_FRAME and zlib.crc32(head) % AVG_FRAME >= end - entry_start:
            return False
        self.start = end
        return True

    def cut_at(self, offset: int) -> None:
        """A cut made inside an entry (every IN_ENTRY bytes of a big file's data)."""
        self.start = offset


def data_cuts(data_start: int, size: int) -> Iterator[int]:
    """Where a file's data of `size` bytes starting at `data_start` is cut inside."""
    return iter(range(data_start + IN_ENTRY, data_start + size, IN_ENTRY))


@dataclass(frozen=True)
class Frame:
    identity: str  # sha256 hex of the frame's uncompressed bytes
    size: int  # uncompressed bytes
    compressed: int  # compressed bytes
    source: str = ""  # see Sources ("" when not known)
    state: str = ""  # the diff ID's hash state after this frame (layer/diffhash; "": none)


Source = tuple[str, bool]  # a frame's source digest, and whether it may stand for its bytes


class Sources:
    """What a frame's bytes were made of, known without reading the files: the tar bytes
    of every header, and each file's data by (st_dev, st_ino, offset, length). Two frames
    with the same source digest hold the same bytes when their files' inodes held the same
    data both times: true of a file hardlinked from the previous version of a COPY layer
    (unpacked layers are immutable, and it is the inode that version's blob was written
    from). So a frame whose every file is such a link (st_nlink > 1: in a COPY layer's
    upper dir only engine/relink makes links) is matched by its source digest and reused
    without its bytes being hashed; any other frame only by the sha256 of its bytes."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._linked = True

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def file(self, st: os.stat_result, offset: int, length: int) -> None:
        if length:
            self._hash.update(b"\0%d:%d:%d:%d\0" % (st.st_dev, st.st_ino, offset, length))
            if st.st_nlink < 2:
                self._linked = False

    def take(self) -> Source:
        """The source of the frame just ended; the next one starts."""
        source = (self._hash.hexdigest(), self._linked)
        self._hash, self._linked = hashlib.sha256(), True
        return source


@dataclass(frozen=True)
class FrameIndex:
    """What a framed blob is made of, frame by frame, and how it was compressed."""

    compression: Compression
    level: int
    frames: tuple[Frame, ...]
    diff_id: str = ""  # of the tar the frames make, when their states were kept

    @property
    def blob_size(self) -> int:
        return sum(f.compressed for f in self.frames)

    def offsets(self) -> Iterator[tuple[Frame, int]]:
        offset = 0
        for frame in self.frames:
            yield frame, offset
            offset += frame.compressed

    def to_json(self) -> dict[str, Any]:
        frames = [[f.identity, f.size, f.compressed, f.source, f.state] for f in self.frames]
        return {
            "compression": self.compression.value,
            "level": self.level,
            "frames": frames,
            "diff_id": self.diff_id,
            "check": _check(frames, self.diff_id),
        }

    @classmethod
    def from_json(cls, value: Any) -> FrameIndex:
        if not isinstance(value, dict):
            raise FormatError("frame index: not a JSON object")
        try:
            kind = Compression(str(value.get("compression")))
            level = value["level"]
            rows, diff_id = value["frames"], str(value.get("diff_id", ""))
            frames = tuple(Frame(str(i), int(u), int(c), str(s), str(t)) for i, u, c, s, t in rows)
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"frame index: {err}") from None
        if not isinstance(level, int) or any(f.size < 0 or f.compressed <= 0 for f in frames):
            raise FormatError("frame index: bad sizes")
        if value.get("check") != _check(rows, diff_id):
            # A damaged record would lend wrong hash states (a wrong diff ID): refused.
            raise FormatError("frame index: its checksum does not match")
        return cls(kind, level, frames, diff_id)


def with_states(index: FrameIndex, states: list[str], diff_id: str) -> FrameIndex:
    """`index` with the diff ID's hash state after each frame (layer/diffhash)."""
    frames = tuple(replace(f, state=state) for f, state in zip(index.frames, states, strict=True))
    return replace(index, frames=frames, diff_id=diff_id)


def _check(rows: list[Any], diff_id: str) -> str:
    """The checksum a frame index record carries over its frames and diff ID."""
    return hashlib.sha256(json.dumps([rows, diff_id]).encode()).hexdigest()


@dataclass(frozen=True)
class PreviousBlob:
    """A blob of an earlier version of the layer, whose frames may be copied."""

    path: Path
    index: FrameIndex


def effective_level(compression: Compression, level: int | None) -> int:
    if level is not None:
        return level
    return GZIP_LEVEL if compression is Compression.GZIP else ZSTD_LEVEL


class _Member:
    """One frame being compressed: a zstd frame, or a gzip member with our fixed header."""

    def __init__(self, sink: Sink, kind: Compression, level: int, zstd: Any) -> None:
        self._sink = sink
        self.size = 0  # compressed bytes written
        self._raw = 0  # uncompressed bytes taken
        self._crc = 0
        if kind is Compression.ZSTD:
            self._z = zstd.compressobj()
            self._gzip = False
        else:
            self._z = zlib.compressobj(level, zlib.DEFLATED, -15)
            self._gzip = True
            self._emit(gzip_header(level))

    def _emit(self, data: bytes) -> None:
        if data:
            self._sink.write(data)
            self.size += len(data)

    def write(self, data: bytes) -> None:
        if self._gzip:
            self._crc = zlib.crc32(data, self._crc)
            self._raw += len(data)
        self._emit(self._z.compress(data))

    def end(self) -> int:
        tail = self._z.flush()
        if self._gzip:
            tail += self._crc.to_bytes(4, "little") + (self._raw & 0xFFFFFFFF).to_bytes(4, "little")
        self._emit(tail)
        return self.size


class FramedCompressor:
    """Takes the tar stream in chunks and `cut()`s; writes each frame, compressed or copied
    from the previous blob, into `sink`; `close()` ends the last frame and returns the
    blob's index.

    Without a previous blob a frame is compressed as its chunks come; with one it is held
    until its end, when its identity says whether to copy it or compress it. `identify`
    False (nobody keeps the index) leaves the identities out: one hashing pass less."""

    def __init__(
        self,
        sink: Sink,
        compression: Compression,
        level: int | None,
        previous: PreviousBlob | None = None,
        *,
        identify: bool = True,
    ) -> None:
        if compression not in (Compression.ZSTD, Compression.GZIP):
            raise ValueError(f"no frames for {compression!r}")
        self._sink = sink
        self._kind = compression
        self._level = effective_level(compression, level)
        self._chunks: list[bytes] = []
        self._identify = identify or previous is not None
        self._hash = hashlib.sha256()
        self._size = 0
        self._frames: list[Frame] = []
        self.reused = 0  # frames copied from the previous blob (for tests and figures)
        self._known: dict[tuple[str, int], tuple[int, Frame]] = {}  # by identity and size
        self._by_source: dict[str, tuple[int, Frame]] = {}
        self._previous_fd = -1
        if previous is not None and self._usable(previous):
            for frame, offset in previous.index.offsets():
                self._known.setdefault((frame.identity, frame.size), (offset, frame))
                if frame.source:
                    self._by_source.setdefault(frame.source, (offset, frame))
        self._zstd: Any = None
        if compression is Compression.ZSTD:
            self._zstd = zstd_context(self._level)
        self._member: _Member | None = None  # the frame being compressed as it comes
        # From a layer's second frame on (none when a previous blob lends frames): its
        # frames compressed on threads of their own, written in order (_Pool).
        self._pool: _Pool | None = None

    def _usable(self, previous: PreviousBlob) -> bool:
        """Only a blob of the same compression and level, whole on disk, lends frames."""
        index = previous.index
        if index.compression is not self._kind or index.level != self._level:
            return False
        try:
            fd = os.open(previous.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        if os.fstat(fd).st_size != index.blob_size:
            os.close(fd)
            return False
        self._previous_fd = fd
        return True

    def _new_member(self) -> _Member:
        return _Member(self._sink, self._kind, self._level, self._zstd)

    def write(self, data: bytes, /) -> object:
        if data:
            self._size += len(data)
            if self._known:
                self._chunks.append(data)  # hashed at the cut, if its source does not tell
            else:
                if self._identify:
                    self._hash.update(data)
                if self._pool is not None:  # compressed at the cut, beside the next frame
                    self._chunks.append(data)
                    return len(data)
                if self._member is None:
                    self._member = self._new_member()
                self._member.write(data)
        return len(data)

    def cut(self, source: Source | None = None) -> None:
        """End the frame; `source` is what its bytes came from (Sources), if known."""
        if not self._size:
            return
        digest = "" if source is None else source[0]
        if self._pool is not None:  # compressed on the pool, written in order
            identity = self._hash.hexdigest() if self._identify else ""
            self._pool.submit(self._chunks, self._size, identity, digest)
            self._chunks, self._hash, self._size = [], hashlib.sha256(), 0
            return
        if self._member is not None:  # compressed as it came
            identity = self._hash.hexdigest() if self._identify else ""
            compressed = self._member.end()
            self._member = None
            if _lanes() > 1:  # a second frame: the next ones go beside each other
                self._pool = _Pool(self._sink, self._kind, self._level, self._frames)
        else:
            place, hashed = None, False
            if source is not None and source[1]:  # every file a link: its source tells
                place = self._by_source.get(source[0])
                if place is not None and place[1].size != self._size:
                    place = None
            if place is None:
                for chunk in self._chunks:
                    self._hash.update(chunk)
                hashed = True
                place = self._known.get((self._hash.hexdigest(), self._size))
            if place is not None and self._copy(place[0], place[1].compressed):
                identity, compressed = place[1].identity, place[1].compressed
                self.reused += 1
            else:
                if not hashed:
                    for chunk in self._chunks:
                        self._hash.update(chunk)
                identity = self._hash.hexdigest()
                member = self._new_member()
                for chunk in self._chunks:
                    member.write(chunk)
                compressed = member.end()
        self._frames.append(Frame(identity, self._size, compressed, digest))
        self._chunks, self._hash, self._size = [], hashlib.sha256(), 0

    def _copy(self, offset: int, length: int) -> bool:
        """The previous blob's bytes for a frame; False (compress instead) if it is short.
        A sink that can (the store's BlobWriter) copies them itself, beside the writer."""
        copy_range = getattr(self._sink, "copy_range", None)
        if copy_range is not None:
            try:
                copy_range(self._previous_fd, offset, length)
            except ValueError:  # (a range past a truncated file's end)
                return False
            return True
        parts = []
        end = offset + length
        while offset < end:
            part = os.pread(self._previous_fd, min(end - offset, 16 << 20), offset)
            if not part:
                return False
            parts.append(part)
            offset += len(part)
        for part in parts:
            self._sink.write(part)
        return True

    def close(self) -> FrameIndex:
        self.cut()
        if self._pool is not None:
            self._pool.finish()  # (every frame written, in order, and in self._frames)
        self.abandon()
        return FrameIndex(self._kind, self._level, tuple(self._frames))

    def abandon(self) -> None:
        """Let go of the previous blob and of zstd's context now: given back for the next
        layer, or, with a stream left open in it, dropped. Its worker threads exist in this
        process only: a context left for the garbage collector to free might be freed in a
        child forked later (a sandbox), which would wait for them forever."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()
        if self._previous_fd >= 0:
            os.close(self._previous_fd)
            self._previous_fd = -1
        if self._zstd is not None and self._member is None:  # no stream left open in it
            give_back(self._level, self._zstd)
        self._zstd = self._member = None
        self._chunks = []


# Frames compressed at once, at most: a thread each, and one more being read from the tar.
MAX_LANES = 4


def _lanes() -> int:
    return min(len(os.sched_getaffinity(0)), MAX_LANES)


class _Pool:
    """A layer's frames compressed each on a thread of the pool (frames are independent,
    and zstd and zlib let go of the GIL), their bytes written to the sink in order, each
    Frame appended to `frames` as it is written. With one zstd context in worker mode per
    frame, a frame's bytes are the ones one context compressing every frame in turn
    writes (tests/layer/test_frames.py). 4 MiB frames are one zstd job each: its own
    workers never compressed two of them at once."""

    def __init__(self, sink: Sink, kind: Compression, level: int, frames: list[Frame]) -> None:
        import collections
        from concurrent.futures import ThreadPoolExecutor

        self._sink, self._kind, self._level, self._frames = sink, kind, level, frames
        self._lanes = _lanes()
        self._executor = ThreadPoolExecutor(self._lanes, thread_name_prefix="frames")
        self._queue: collections.deque[tuple[Any, int, str, str]] = collections.deque()

    def submit(self, chunks: list[bytes], size: int, identity: str, source: str) -> None:
        future = self._executor.submit(self._compress, chunks)
        self._queue.append((future, size, identity, source))
        self._write(wait=len(self._queue) > self._lanes)

    def _compress(self, chunks: list[bytes]) -> bytes:
        out = _Collected()
        zstd = zstd_context(self._level) if self._kind is Compression.ZSTD else None
        try:
            member = _Member(out, self._kind, self._level, zstd)
            for chunk in chunks:
                member.write(chunk)
            member.end()
        finally:
            if zstd is not None:
                give_back(self._level, zstd)
        return b"".join(out.parts)

    def _write(self, *, wait: bool) -> None:
        """Write the frames done at the queue's head; with `wait`, the head's at least."""
        while self._queue and (wait or self._queue[0][0].done()):
            future, size, identity, source = self._queue.popleft()
            data = future.result()
            self._sink.write(data)
            self._frames.append(Frame(identity, size, len(data), source))
            wait = False

    def finish(self) -> None:
        while self._queue:
            self._write(wait=True)
        self._executor.shutdown()

    def stop(self) -> None:
        """Drop what is not written (a layer given up), once its threads are done."""
        self._queue.clear()
        self._executor.shutdown(cancel_futures=True)


class _Collected:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)
