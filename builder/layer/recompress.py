"""recompress: a layer blob in one compression -> the same tar in another, streamed.

The tar bytes pass through untouched (decompressed, hashed, compressed again by the same
deterministic compressors write_layer uses), so the diff_id cannot change and the same
blob comes out whichever compression the input had.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.layer.compression import Sink, compressor, open_decompressed
from builder.layer.write import LayerDigests, _CountingHasher

_CHUNK = 1 << 20


def recompress(
    blob: BinaryIO, out: Sink, compression: Compression, level: int | None = None
) -> LayerDigests:
    """Write the tar inside `blob` (gzip, zstd or plain, sniffed) into `out` compressed with
    `compression` at `level`; the digests are of what was read and written."""
    tar_hash = hashlib.sha256()
    written = _CountingHasher(out)
    comp = compressor(written, compression, level)
    plain = open_decompressed(blob)
    while chunk := plain.read(_CHUNK):
        tar_hash.update(chunk)
        comp.write(chunk)
    comp.close()
    return LayerDigests(
        diff_id=Digest.from_hash(tar_hash),
        digest=Digest.from_hash(written.hash),
        size=written.size,
        media_type=MediaType.for_layer(compression),
    )
