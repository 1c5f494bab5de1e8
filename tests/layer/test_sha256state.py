"""layer/sha256state: a SHA-256 whose state is saved and resumed gives hashlib's digests."""

from __future__ import annotations

import array
import hashlib
import mmap
import random
from pathlib import Path

import pytest

from builder.layer import sha256state
from builder.layer.sha256state import Sha256, StateError

pytestmark = pytest.mark.skipif(not sha256state.available(), reason="no libcrypto in this Python")


def test_a_resumed_hash_equals_hashlibs_at_random_cut_points() -> None:
    rng = random.Random(5)
    data = rng.randbytes(3 << 20)
    want = hashlib.sha256(data).hexdigest()
    for _ in range(40):
        cuts = sorted(rng.sample(range(len(data)), rng.randint(1, 4)))
        h, at = Sha256(), 0
        for cut in cuts:  # saved and resumed at each cut, as frames are
            h.update(data[at:cut])
            h = Sha256.resume(h.save(), cut)
            at = cut
        h.update(memoryview(data)[at:])
        assert h.hexdigest() == want
    assert Sha256().hexdigest() == hashlib.sha256().hexdigest()


def test_hexdigest_does_not_end_the_hash() -> None:
    h = Sha256()
    h.update(b"abc")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    h.update(b"def")
    assert h.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_a_state_for_another_offset_or_damaged_is_refused() -> None:
    h = Sha256()
    h.update(b"x" * 1000)
    state = h.save()
    assert Sha256.resume(state, 1000).hexdigest() == hashlib.sha256(b"x" * 1000).hexdigest()
    for offset in (999, 1001, 1000 + 64, 0):
        with pytest.raises(StateError):
            Sha256.resume(state, offset)
    for bad in (state[:-2], state + "00", "zz" + state[2:], ""):
        with pytest.raises(StateError):
            Sha256.resume(bad, 1000)


def test_every_kind_of_buffer_hashes_as_its_bytes(tmp_path: Path) -> None:
    """bytes, a bytearray, read-only and writable views, and a private map of a file (the
    writer's linked files): the writable ones are hashed where they lie."""
    data = random.Random(3).randbytes(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), len(data), mmap.MAP_PRIVATE)
    chunks = [
        data[:1000],
        bytearray(data[1000:5000]),
        memoryview(data)[5000:9000],
        memoryview(bytearray(data))[9000 : 1 << 20],
        memoryview(mapped)[1 << 20 :],
    ]
    ours = Sha256()
    for chunk in chunks:
        ours.update(chunk)
    assert ours.hexdigest() == hashlib.sha256(data).hexdigest()
    # Not a plain run of bytes: a strided view (copied), a view of 4-byte items.
    strided, wide = memoryview(bytearray(data))[::3], memoryview(array.array("I", range(999)))
    for odd in (strided, wide):
        ours = Sha256()
        ours.update(odd)
        assert ours.hexdigest() == hashlib.sha256(odd.tobytes()).hexdigest()
        assert ours.offset == odd.nbytes
    del chunks, chunk
    mapped.close()
