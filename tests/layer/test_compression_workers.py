"""zstd's worker mode: the layer bytes must not depend on the machine's core count."""

from __future__ import annotations

import io
import random

import pytest
import zstandard

from builder.image.mediatypes import Compression
from builder.layer import compression
from builder.layer.compression import ZSTD_LEVEL, compressor, zstd_workers


def _data() -> bytes:
    # Big enough for several of zstd's jobs (8 MB each at level 3), so workers share it.
    rng = random.Random(3)
    words = [rng.randbytes(6) for _ in range(2000)]
    return b"".join(rng.choice(words) + rng.randbytes(rng.randint(0, 20)) for _ in range(1_200_000))


def _zstd(data: bytes, threads: int, chunk: int = 1 << 20) -> bytes:
    co = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads).compressobj()
    parts = [co.compress(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"".join(parts) + co.flush()


def test_zstd_output_is_the_same_for_any_number_of_workers_but_not_single_threaded() -> None:
    data = _data()
    one = _zstd(data, 1)
    assert len(data) > 16 << 20
    assert _zstd(data, 4) == one and _zstd(data, 2) == one
    assert _zstd(data, 3, chunk=12_345) == one  # nor on how the input is cut into calls
    assert _zstd(data, 0) != one  # single-threaded mode: other bytes (why we never use it)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(one) == data


def test_layer_compressor_uses_workers_whatever_the_cpu_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CPU count is the one thing faked: this machine's cores cannot be changed.
    assert zstd_workers() >= 1
    data = _data()[: 10 << 20]
    outputs = []
    for cpus in ({0}, {0, 1, 2, 3}):
        monkeypatch.setattr(compression.os, "sched_getaffinity", lambda _pid, c=cpus: c)
        assert zstd_workers() == len(cpus)
        out = io.BytesIO()
        comp = compressor(out, Compression.ZSTD)
        comp.write(data)
        comp.close()
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] == _zstd(data, 1) != _zstd(data, 0)
