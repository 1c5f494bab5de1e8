"""zstd's worker mode: the layer bytes must not depend on the machine's core count."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

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
        monkeypatch.setattr(compression, "_IDLE", {})  # a context with these workers
        assert zstd_workers() == len(cpus)
        out = io.BytesIO()
        comp = compressor(out, Compression.ZSTD)
        comp.write(data)
        comp.close()
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] == _zstd(data, 1) != _zstd(data, 0)


def _compress(data: bytes) -> bytes:
    out = io.BytesIO()
    comp = compressor(out, Compression.ZSTD)
    comp.write(data)
    comp.close()
    return out.getvalue()


def test_a_reused_context_writes_what_a_new_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers reuse zstd contexts (their worker threads stay up between layers); a stream
    in a reused context is the same bytes as in a new one, whatever came before it."""
    monkeypatch.setattr(compression, "_IDLE", {})
    data = _data()[: 9 << 20]  # (more than one of zstd's jobs)
    made = compression.zstd_context(ZSTD_LEVEL)
    compression.give_back(ZSTD_LEVEL, made)
    assert compression.zstd_context(ZSTD_LEVEL) is made  # reused, not made again
    compression.give_back(ZSTD_LEVEL, made)
    small = b"a tiny layer " * 100
    first = _compress(small)
    assert compression.zstd_context(ZSTD_LEVEL) is made
    compression.give_back(ZSTD_LEVEL, made)
    assert _compress(data) == _zstd(data, 1)  # after a small stream
    assert _compress(small) == first == _zstd(small, 1)  # after a big one
    # A stream given up half-way leaves no trace in the next one.
    left = made.compressobj()
    left.compress(data[: 3 << 20])
    assert _compress(small) == first


def test_a_forked_child_never_frees_an_idle_context(tmp_path: Path) -> None:
    """Freeing a context joins its worker threads; a child forked after a layer was written
    has none of them, so one that frees an idle context (at its interpreter's exit) would
    wait forever."""
    script = tmp_path / "child.py"
    script.write_text(
        "import io, os, sys\n"
        "from builder.image.mediatypes import Compression\n"
        "from builder.layer.compression import compressor\n"
        "c = compressor(io.BytesIO(), Compression.ZSTD)\n"
        "c.write(bytes(10 << 20))\n"
        "c.close()\n"
        "pid = os.fork()\n"
        "if pid:\n"
        "    os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
        "sys.exit(0)  # the child: a normal exit, which frees what the modules hold\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    child = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    try:
        assert child.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the hung grandchild too
        child.wait()
        pytest.fail("the forked child hung freeing zstd's context")
