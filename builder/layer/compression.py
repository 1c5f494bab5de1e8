"""Layer compression: streaming compressors (deterministic) and a sniffing decompressor."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from typing import Any, BinaryIO, Protocol

from builder.errors import LayerError
from builder.image.compression import DEFAULT_LEVELS
from builder.image.mediatypes import Compression

__all__ = ["Compression", "Sink", "compressor", "open_decompressed", "sniff", "sniff_format"]

# Each compressed format's first bytes: what a stream is, whatever it is named.
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
ZSTD_LEVEL = DEFAULT_LEVELS[Compression.ZSTD]
GZIP_LEVEL = DEFAULT_LEVELS[Compression.GZIP]


class Sink(Protocol):
    """Anything bytes can be written to (a file, a hasher stage, a BlobWriter)."""

    def write(self, data: bytes, /) -> object: ...


class Compressor(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def close(self) -> None:
        """Flush the end of the stream into the sink (the sink itself stays open)."""


class _Plain:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes, /) -> object:
        return self._sink.write(data)

    def close(self) -> None:
        pass


def gzip_header(level: int) -> bytes:
    """A gzip member's header as we write it: no name, mtime 0, OS 255, XFL from the level."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0  # RFC 1952: slowest / fastest
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 255))


class _Gzip:
    """One gzip member whose header we write ourselves: no name, mtime 0, OS 255 ("unknown",
    as Go's gzip writes it), XFL from the level alone. zlib's own gzip header would carry the
    OS it was built for, so the same layer would differ from one platform to the next."""

    def __init__(self, sink: Sink, level: int) -> None:
        self._sink = sink
        self._z = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: our own framing
        self._crc = 0
        self._size = 0
        self._sink.write(gzip_header(level))

    def write(self, data: bytes, /) -> object:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        out = self._z.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def close(self) -> None:
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        self._sink.write(self._z.flush() + trailer)


def zstd_workers() -> int:
    """zstd's worker threads for a layer: one per CPU this process may run on, and never 0.

    zstd's output is the same for any number of workers >= 1 (it cuts the input into jobs
    by size, not by worker), but 0 is its single-threaded mode, which writes other bytes:
    always using workers keeps a layer's digest the same on a machine of any core count
    (tests/layer/test_compression_workers.py checks both facts against the library).
    """
    return max(1, len(os.sched_getaffinity(0)))


# zstd contexts not in use, by level: a context keeps its worker threads between streams,
# and making them (a new context's first stream) cost 0.3-0.5 ms of a tiny layer's write.
# A reused context's output is the same bytes as a new one's (zstd resets it per stream;
# tests/layer/test_compression_workers.py checks it against the library).
_IDLE: dict[int, list[Any]] = {}
_IDLE_LOCK = threading.Lock()


def zstd_context(level: int) -> Any:
    """A zstandard.ZstdCompressor in worker mode at `level`, for the caller alone until it
    gives it back (give_back); one made for it if none is idle."""
    with _IDLE_LOCK:
        idle = _IDLE.get(level)
        if idle:
            return idle.pop()
    import zstandard

    _at_fork()
    return zstandard.ZstdCompressor(level=level, threads=zstd_workers())


def give_back(level: int, context: Any) -> None:
    """`context` (from zstd_context, with no stream open on it) is free for the next
    layer; one per level is kept (a build writes its layers in turn, mostly)."""
    with _IDLE_LOCK:
        idle = _IDLE.setdefault(level, [])
        if len(idle) < _KEEP:
            idle.append(context)


# idle contexts per level (stages that build at once, and a layer's frames, write at once)
_KEEP = 4
_forks_watched = False


def _at_fork() -> None:
    """A child forked from here (a sandbox, a server's worker) must never free the idle
    contexts: freeing one joins its worker threads, which the child does not have, and
    waits forever. Each gets a reference nothing drops, so not even the interpreter's
    exit frees it there."""
    global _forks_watched
    if not _forks_watched:
        _forks_watched = True
        os.register_at_fork(after_in_child=_keep_in_child)


def _keep_in_child() -> None:
    contexts = [c for idle in _IDLE.values() for c in idle]
    if contexts:
        import ctypes

        for context in contexts:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(context))


class _Zstd:
    def __init__(self, sink: Sink, level: int) -> None:
        self._level = level
        self._cctx = zstd_context(level)
        self._c = self._cctx.compressobj()
        self._sink = sink

    def write(self, data: bytes, /) -> object:
        out = self._c.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def close(self) -> None:
        self._sink.write(self._c.flush())
        self._c = None
        give_back(self._level, self._cctx)


def compressor(sink: Sink, compression: Compression, level: int | None = None) -> Compressor:
    """A writer that compresses into `sink`; call close() to finish the stream."""
    if compression is Compression.NONE:
        return _Plain(sink)
    if compression is Compression.GZIP:
        return _Gzip(sink, GZIP_LEVEL if level is None else level)
    if compression is Compression.ZSTD:
        return _Zstd(sink, ZSTD_LEVEL if level is None else level)
    raise ValueError(f"unknown compression {compression!r}")


class _Prefixed(io.RawIOBase):
    """Give back bytes already read for sniffing, then read on from the underlying stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def sniff_format(head: bytes) -> str | None:
    """The compression of a stream that starts with `head`: "gzip", "zstd", "bzip2", "xz",
    or None when it is not compressed (or in a format we do not know)."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def sniff(head: bytes) -> Compression:
    """A layer's compression (OCI layers are gzip, zstd or plain; others read as plain)."""
    name = sniff_format(head)
    if name == "gzip":
        return Compression.GZIP
    if name == "zstd":
        return Compression.ZSTD
    return Compression.NONE


class _Checked(io.RawIOBase):
    """Turn a decompressor's own exceptions into LayerError (the blob is untrusted)."""

    def __init__(self, inner: BinaryIO, what: str) -> None:
        self._inner = inner
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buf))
        except (OSError, EOFError, zlib.error) as err:
            raise LayerError(f"corrupt {self._what} layer stream: {err}") from None
        except Exception as err:  # zstandard.ZstdError is not an OSError subclass
            if type(err).__name__ == "ZstdError":
                raise LayerError(f"corrupt {self._what} layer stream: {err}") from None
            raise
        buf[: len(data)] = data
        return len(data)


def open_decompressed(fileobj: BinaryIO) -> BinaryIO:
    """A stream of the tar bytes in `fileobj`, decompressed by what its magic says.

    Reads forward only (works on pipes and HTTP bodies); never seeks.
    """
    head = _read_exact(fileobj, 4)
    raw = io.BufferedReader(_Prefixed(head, fileobj), buffer_size=1 << 20)
    kind = sniff(head)
    if kind is Compression.NONE:
        return raw
    inner: BinaryIO
    if kind is Compression.GZIP:
        import gzip

        inner = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    else:
        import zstandard

        inner = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return io.BufferedReader(_Checked(inner, kind.value), buffer_size=1 << 20)
