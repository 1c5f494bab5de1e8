"""recompress: a layer blob in one compression -> the same tar in another, streamed.

The tar bytes pass through untouched (decompressed, hashed, cut into frames where
write_layer cuts them, compressed again by the same deterministic compressors), so the
diff_id cannot change and the same blob comes out whichever compression the input had.
"""

from __future__ import annotations

import collections
import hashlib
from typing import BinaryIO

from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.layer.compression import Sink, compressor, open_decompressed
from builder.layer.frames import FramedCompressor
from builder.layer.tarcuts import TarCuts
from builder.layer.write import LayerDigests, _CountingHasher

_CHUNK = 1 << 20


def recompress(
    blob: BinaryIO, out: Sink, compression: Compression, level: int | None = None
) -> LayerDigests:
    """Write the tar inside `blob` (gzip, zstd or plain, sniffed) into `out` compressed with
    `compression` at `level`; the digests are of what was read and written."""
    tar_hash = hashlib.sha256()
    written = _CountingHasher(out)
    plain = open_decompressed(blob)
    if compression is Compression.NONE:
        comp = compressor(written, compression, level)
        while chunk := plain.read(_CHUNK):
            tar_hash.update(chunk)
            comp.write(chunk)
        comp.close()
        index = None
    else:  # cut into the frames write_layer would have cut it into
        framed = FramedCompressor(written, compression, level, identify=False)
        cuts = TarCuts()
        ahead: collections.deque[int] = collections.deque()  # found before their bytes came
        offset = 0  # of `chunk` in the stream
        while chunk := plain.read(_CHUNK):
            tar_hash.update(chunk)
            ahead.extend(cuts.feed(chunk))
            while ahead and ahead[0] <= offset + len(chunk):
                cut = ahead.popleft()
                framed.write(chunk[: cut - offset])
                framed.cut()
                chunk, offset = chunk[cut - offset :], cut
            framed.write(chunk)
            offset += len(chunk)
        index = framed.close()
    return LayerDigests(
        diff_id=Digest.from_hash(tar_hash),
        digest=Digest.from_hash(written.hash),
        size=written.size,
        media_type=MediaType.for_layer(compression),
        frames=index,
    )
