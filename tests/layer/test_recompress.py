"""recompress: the same tar in another compression, deterministically, diff_id unchanged."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from builder.errors import LayerError
from builder.image.mediatypes import Compression, MediaType
from builder.layer.compression import open_decompressed
from builder.layer.recompress import recompress
from builder.layer.write import LayerDigests, write_layer


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A tree of a few MB, part text and part noise, so streams span many 1 MB chunks."""
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    rng = random.Random(7)
    for i in range(6):
        words = b" ".join(rng.choice((b"alpha", b"beta", b"gamma")) for _ in range(100_000))
        (root / "d" / f"f{i}").write_bytes(words + rng.randbytes(300_000))
    os.symlink("d/f0", root / "link")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    return root


def _written(src: Path, compression: Compression, level: int | None = None) -> bytes:
    out = io.BytesIO()
    write_layer(src, out, compression, level=level)
    return out.getvalue()


def _converted(blob: bytes, compression: Compression, level: int | None = None) -> bytes:
    out = io.BytesIO()
    recompress(io.BytesIO(blob), out, compression, level)
    return out.getvalue()


def _plain(blob: bytes) -> bytes:
    return open_decompressed(io.BytesIO(blob)).read()


def test_converting_gives_the_blob_writing_would_have_given(src: Path) -> None:
    """Whichever way a gzip (or zstd) blob comes about, written or converted, from whatever
    compression, its bytes are the same: a variant's digest depends on the tar alone."""
    zstd, gzip, plain = (_written(src, c) for c in (Compression.ZSTD, Compression.GZIP,
                                                    Compression.NONE))  # fmt: skip
    assert len(zstd) > 2 << 20  # the fixture is big enough to span chunks
    assert _converted(zstd, Compression.GZIP) == gzip
    assert _converted(gzip, Compression.ZSTD) == zstd
    assert _converted(_converted(zstd, Compression.GZIP), Compression.ZSTD) == zstd
    assert _converted(plain, Compression.ZSTD) == zstd
    assert _converted(zstd, Compression.NONE) == plain
    assert _plain(zstd) == _plain(gzip) == plain  # the uncompressed tar is byte-identical


def test_the_digests_are_those_of_the_bytes(src: Path) -> None:
    zstd = io.BytesIO()
    made: LayerDigests = write_layer(src, zstd, Compression.ZSTD)
    out = io.BytesIO()
    got = recompress(io.BytesIO(zstd.getvalue()), out, Compression.GZIP)
    assert got.diff_id == made.diff_id
    assert got.size == len(out.getvalue()) and got.media_type is MediaType.OCI_LAYER_GZIP
    assert str(got.digest) == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()


def test_a_level_changes_the_blob_not_the_tar(src: Path) -> None:
    zstd = _written(src, Compression.ZSTD)
    for kind, other in ((Compression.ZSTD, 9), (Compression.GZIP, 1)):
        default = _converted(zstd, kind)
        leveled = _converted(zstd, kind, other)
        assert leveled != default
        assert _plain(leveled) == _plain(default)
        assert _converted(zstd, kind, other) == leveled  # deterministic at every level


def test_gzip_header_fields_are_fixed() -> None:
    """No name, mtime 0, OS 255 (as Go writes it): nothing of the host or the clock."""
    for level, xfl in ((6, 0), (9, 2), (1, 4)):
        blob = _converted(b"x" * 1000, Compression.GZIP, level)
        assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 255))
        assert _plain(blob) == b"x" * 1000
    # A tar of 0 bytes (nothing read) is still one whole member.
    assert _plain(_converted(b"", Compression.GZIP)) == b""


def test_a_corrupt_source_is_a_layer_error() -> None:
    blob = bytearray(_converted(b"y" * 100_000, Compression.GZIP))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(LayerError, match="corrupt gzip"):
        _converted(bytes(blob), Compression.ZSTD)
