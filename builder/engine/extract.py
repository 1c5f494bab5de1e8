"""ADD's archive rule: a local tar (plain, gzip, bzip2, xz or zstd) is unpacked, not copied.

Runs inside the sandbox, in the image's root. Members may not leave the destination
(absolute names, `..`, links pointing out), as docker refuses them; modes, owners and
times are kept as the archive has them.
"""

from __future__ import annotations

import io
import os
import tarfile
from types import TracebackType
from typing import IO

from builder.layer.compression import sniff_format


def preload() -> None:
    """Import what extraction may need, BEFORE entering the sandbox: inside the image's
    root there is no Python library to import from (tarfile loads its decompressors
    lazily, and an ImportError there reads as "not an archive")."""
    import bz2  # noqa: F401
    import gzip  # noqa: F401
    import lzma  # noqa: F401

    import zstandard  # noqa: F401


class _Archive(tarfile.TarFile):
    """A TarFile that closes the stream it reads too (tarfile leaves a given one open)."""

    source: IO[bytes] | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.source is not None:
                self.source.close()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(kind, error, trace)  # on an error, it skips close()
        finally:
            if self.source is not None:
                self.source.close()


def _is_tar_header(block: bytes) -> bool:
    return len(block) >= 263 and block[257:262] == b"ustar"


def open_archive(fd: int) -> tarfile.TarFile | None:
    """The tar in the file at `fd` (read from its start), or None if it is not one."""
    head = os.pread(fd, 512, 0)
    stream: IO[bytes] = os.fdopen(os.dup(fd), "rb")
    compression = sniff_format(head)
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, closefd=True)
        buffered = io.BufferedReader(reader)
        if not _is_tar_header(buffered.peek(512)[:512]):
            buffered.close()
            return None
        tar = _Archive.open(fileobj=buffered, mode="r|")
        tar.source = buffered
        return tar
    if compression is not None or _is_tar_header(head):
        try:
            tar = _Archive.open(fileobj=stream, mode="r:*")
        except tarfile.TarError:
            stream.close()
            return None
        tar.source = stream
        return tar
    stream.close()
    return None


def _confined(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    # data_filter's path checks (absolute names, `..`, links out of dest) raise on escape;
    # its other changes (dropping setuid bits, owners) are not docker's, so the member is
    # kept as the archive has it.
    tarfile.data_filter(member, dest)
    return member


def extract(tar: tarfile.TarFile, dest: str) -> None:
    os.makedirs(dest, 0o755, exist_ok=True)
    with tar:
        tar.extractall(dest, numeric_owner=True, filter=_confined)
