"""One compression sniffer for layers (gzip/zstd/plain) and ADD's archives (also bzip2, xz)."""

from __future__ import annotations

import bz2
import gzip
import lzma

import pytest
import zstandard

from builder.layer.compression import Compression, sniff, sniff_format

DATA = b"ustar? no, just bytes" * 10


@pytest.mark.parametrize(
    ("blob", "name", "layer"),
    [
        (gzip.compress(DATA), "gzip", Compression.GZIP),
        (zstandard.ZstdCompressor().compress(DATA), "zstd", Compression.ZSTD),
        (bz2.compress(DATA), "bzip2", Compression.NONE),  # not an OCI layer compression
        (lzma.compress(DATA), "xz", Compression.NONE),
        (DATA, None, Compression.NONE),
        (b"", None, Compression.NONE),
    ],
    # Named, not shown: gzip's header holds the time, and pytest-xdist's workers must
    # collect the same test ids.
    ids=["gzip", "zstd", "bzip2", "xz", "plain", "empty"],
)
def test_sniff(blob: bytes, name: str | None, layer: Compression) -> None:
    assert sniff_format(blob[:6]) == name
    assert sniff(blob[:4]) is layer
