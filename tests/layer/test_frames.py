"""Layers as runs of independent frames (layer/frames): where the cuts fall, that each frame
stands alone for the real zstd and gzip CLIs, that the bytes depend neither on the core
count nor on whether a previous blob lent its frames, and what framing costs in ratio."""

from __future__ import annotations

import gc
import io
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder.image.fields import FormatError
from builder.image.mediatypes import Compression
from builder.layer import compression as compression_module
from builder.layer import frames as frames_module
from builder.layer import sha256state
from builder.layer import write as write_module
from builder.layer.compression import compressor
from builder.layer.frames import MIN_FRAME, FramedCompressor, FrameIndex, PreviousBlob
from builder.layer.write import LayerDigests, write_layer
from builder.record import replace

KINDS = [Compression.ZSTD, Compression.GZIP]
TOOLS = {Compression.ZSTD: ["zstd", "-dc"], Compression.GZIP: ["gzip", "-dc"]}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """About 14 MB of text-like files in many dirs (several frames), plus a 17 MiB file
    (cut inside, every 16 MiB of its data)."""
    root = tmp_path / "tree"
    rng = random.Random(11)
    words = [
        bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(3000)
    ]
    for d in range(40):
        sub = root / f"d{d:02d}"
        sub.mkdir(parents=True)
        for i in range(40):
            text = b" ".join(rng.choices(words, k=rng.randint(100, 2000)))
            (sub / f"f{i:02d}.txt").write_bytes(text)
    (root / "huge.bin").write_bytes(rng.randbytes(17 << 20))
    for path in [root, *root.rglob("*")]:
        os.utime(path, (1_600_000_000, 1_600_000_000))
    return root


def _write(
    src: Path, kind: Compression, previous: PreviousBlob | None = None, level: int | None = None
) -> tuple[bytes, LayerDigests]:
    out = io.BytesIO()
    digests = write_layer(src, out, kind, previous=previous, level=level, identify=True)
    return out.getvalue(), digests


def _lender(tmp_path: Path, blob: bytes, index: FrameIndex | None) -> PreviousBlob:
    assert index is not None
    path = tmp_path / f"prev-{len(list(tmp_path.glob('prev-*')))}"
    path.write_bytes(blob)
    return PreviousBlob(path, index)


@pytest.mark.parametrize("kind", KINDS)
def test_each_frame_stands_alone_for_the_real_cli(tree: Path, kind: Compression) -> None:
    blob, digests = _write(tree, kind)
    plain, _ = _write(tree, Compression.NONE)
    assert digests.frames is not None and len(digests.frames.frames) >= 4
    assert subprocess.run(TOOLS[kind], input=blob, capture_output=True, check=True).stdout == plain
    at = 0
    for frame, offset in digests.frames.offsets():
        one = blob[offset : offset + frame.compressed]
        alone = subprocess.run(TOOLS[kind], input=one, capture_output=True, check=True).stdout
        assert alone == plain[at : at + frame.size]
        at += frame.size
    assert at == len(plain)
    # Cut at entry boundaries (a frame is at least MIN_FRAME long but for the last), or
    # inside the big file's data, 16 MiB from its start.
    assert all(f.size >= MIN_FRAME for f in digests.frames.frames[:-1])


@pytest.mark.parametrize("kind", KINDS)
def test_reused_frames_give_the_bytes_of_a_full_write(
    tree: Path, tmp_path: Path, kind: Compression
) -> None:
    first, digests = _write(tree, kind)
    again, reused = _write(tree, kind, _lender(tmp_path, first, digests.frames))
    assert again == first and reused.reused == len(digests.frames.frames)  # type: ignore[union-attr]

    # An edit in the middle: the frames before and after it are the previous blob's.
    (tree / "d20" / "f05.txt").write_bytes(b"edited\n")
    os.utime(tree / "d20" / "f05.txt", (1_600_000_000, 1_600_000_000))
    full, full_digests = _write(tree, kind)
    lent, lent_digests = _write(tree, kind, _lender(tmp_path, first, digests.frames))
    assert lent == full and lent_digests.diff_id == full_digests.diff_id
    assert lent_digests.digest == full_digests.digest
    frames = full_digests.frames
    assert frames is not None
    assert lent_digests.reused >= len(frames.frames) - 2  # the edited frame (and its next)
    before = [f.identity for f in digests.frames.frames]  # type: ignore[union-attr]
    after = [f.identity for f in frames.frames]
    assert len(set(after) - set(before)) <= 2  # the cuts after the edit did not move
    assert before[-2:] == after[-2:]


def test_a_blob_that_cannot_lend_is_not_used(tree: Path, tmp_path: Path) -> None:
    first, digests = _write(tree, Compression.ZSTD)
    assert digests.frames is not None
    short = _lender(tmp_path, first[:-10], digests.frames)  # not the size its index says
    assert _write(tree, Compression.ZSTD, short)[1].reused == 0
    other_level = _write(tree, Compression.ZSTD, level=5)[0]
    again, lent = _write(tree, Compression.ZSTD, _lender(tmp_path, first, digests.frames), 5)
    assert lent.reused == 0 and again == other_level
    gone = PreviousBlob(tmp_path / "missing", digests.frames)
    assert _write(tree, Compression.ZSTD, gone)[0] == first


def test_framed_zstd_does_not_depend_on_the_core_count(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = []
    for cpus in ({0}, {0, 1, 2, 3}):
        monkeypatch.setattr(compression_module.os, "sched_getaffinity", lambda _pid, c=cpus: c)
        monkeypatch.setattr(compression_module, "_IDLE", {})  # a context with these workers
        outputs.append(_write(tree, Compression.ZSTD)[0])
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("kind", KINDS)
def test_frames_compressed_beside_each_other_are_the_bytes_of_frames_in_turn(
    tree: Path, monkeypatch: pytest.MonkeyPatch, kind: Compression
) -> None:
    """From a layer's second frame on, frames are compressed on threads of their own
    (frames._Pool) and written in order: the blob and its index are those of one
    compressor taking the frames in turn (one lane)."""
    written = {}
    for lanes in (1, 3):
        monkeypatch.setattr(frames_module, "_lanes", lambda n=lanes: n)
        blob, digests = _write(tree, kind)
        assert digests.frames is not None and len(digests.frames.frames) >= 4  # 3 on the pool
        written[lanes] = (blob, digests.diff_id, digests.frames)
    assert written[1] == written[3]


@pytest.mark.parametrize("kind", KINDS)
def test_frames_cost_under_five_percent_of_ratio_on_a_source_tree(
    tmp_path: Path, kind: Compression
) -> None:
    """A real source tree: this repository's Python sources and tests, eight times over
    (so that it spans several frames)."""
    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    for n in range(8):
        for part in ("builder", "tests"):
            shutil.copytree(
                repo / part, src / str(n) / part, ignore=shutil.ignore_patterns("__pycache__")
            )
    framed, digests = _write(src, kind)
    plain, _ = _write(src, Compression.NONE)
    one = io.BytesIO()
    stream = compressor(one, kind)
    stream.write(plain)
    stream.close()
    assert digests.frames is not None and len(digests.frames.frames) >= 2
    assert len(framed) <= 1.05 * len(one.getvalue())


def _link_all(tree: Path, shadow: Path) -> None:
    """Give every file a second link outside the tree, as engine/relink's links have."""
    for path in tree.rglob("*"):
        if path.is_file():
            target = shadow / path.relative_to(tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


@pytest.mark.parametrize("kind", KINDS)
def test_a_linked_file_is_mapped_and_gives_the_bytes_a_read_gives(
    tree: Path, tmp_path: Path, kind: Compression, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big linked file (a COPY layer's shared inode) is hashed and framed from a map of
    it, 16 MiB at a time, a chunk per map (huge.bin is cut inside): the blob, the diff ID
    and the frames are those of the same tree written from reads, with and without a
    lender."""
    plain = tmp_path / "plain"
    shutil.copytree(tree, plain)  # one link each: read
    _link_all(tree, tmp_path / "shadow")
    maps: list[int] = []
    chunks: list[int] = []
    real = write_module._mapped

    def spy(fd: int, size: int) -> object:
        windows = real(fd, size)
        maps.append(size if windows is not None else -1)
        return None if windows is None else (chunks.append(len(c)) or c for c in windows)

    monkeypatch.setattr(write_module, "_mapped", spy)
    read_blob, read = _write(plain, kind)
    assert maps == []
    mapped_blob, mapped = _write(tree, kind)
    assert maps == [17 << 20]  # (the text files are under a MiB: read whole)
    assert chunks == [16 << 20, 1 << 20]  # a chunk per map, not per MiB (the GIL's hand-offs)
    assert (mapped_blob, mapped.diff_id) == (read_blob, read.diff_id)
    assert _bytes_of(mapped.frames) == _bytes_of(read.frames)  # (sources name other inodes)
    lent_blob, lent = _write(tree, kind, _lender(tmp_path, mapped_blob, mapped.frames))
    assert (lent_blob, lent.diff_id) == (read_blob, read.diff_id) and lent.reused


def _bytes_of(index: FrameIndex | None) -> list[tuple[str, int, int, str]]:
    assert index is not None
    return [(f.identity, f.size, f.compressed, f.state) for f in index.frames]


def test_a_file_of_another_size_than_the_walk_saw_is_not_mapped(tmp_path: Path) -> None:
    """A map beyond a file's end raises SIGBUS when touched: a file that is not as long
    as its lstat said is read instead (where a short one is an error, not a crash)."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert write_module._mapped(fd, 4 << 20) is None
        assert write_module._mapped(fd, 2 << 20) is None
        windows = write_module._mapped(fd, 3 << 20)
        assert windows is not None
        assert b"".join(windows) == path.read_bytes()
    finally:
        os.close(fd)


def test_frames_of_linked_files_are_matched_by_their_source(tree: Path, tmp_path: Path) -> None:
    _link_all(tree, tmp_path / "shadow")
    first, digests = _write(tree, Compression.ZSTD)
    assert digests.frames is not None and all(f.source for f in digests.frames.frames)
    again, lent = _write(tree, Compression.ZSTD, _lender(tmp_path, first, digests.frames))
    assert again == first and lent.reused == len(digests.frames.frames)
    assert lent.frames == digests.frames  # the identities too, though not hashed again


def test_a_file_that_is_not_a_link_is_never_matched_by_its_source(
    tree: Path, tmp_path: Path
) -> None:
    """Rewritten in place, same inode, size and mtime: its frame's source is the same, so
    only its bytes can tell. A file with one link is no layer's shared copy: its bytes are
    hashed."""
    first, digests = _write(tree, Compression.ZSTD)
    path = tree / "d10" / "f10.txt"
    data = path.read_bytes()
    with open(path, "r+b") as f:
        f.write(bytes(reversed(data)))
    os.utime(path, (1_600_000_000, 1_600_000_000))
    full = _write(tree, Compression.ZSTD)[0]
    lent, lent_digests = _write(tree, Compression.ZSTD, _lender(tmp_path, first, digests.frames))
    assert lent == full != first
    assert lent_digests.reused == len(digests.frames.frames) - 1  # type: ignore[union-attr]


def test_no_compressor_outlives_the_writer(tmp_path: Path) -> None:
    """zstd's context owns worker threads of this process. Left in a reference cycle, it is
    freed by whichever garbage collection comes next, and in a child forked for a sandbox
    that free waits forever for threads the child does not have (a RUN step hung so)."""
    src = tmp_path / "small"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 1000)
    gc.collect()
    gc.disable()
    try:
        _write(src, Compression.ZSTD)
        alive = [o for o in gc.get_objects() if isinstance(o, FramedCompressor)]
    finally:
        gc.enable()
    assert not alive


@pytest.mark.parametrize("kind", KINDS)
def test_a_layer_hashed_and_compressed_inline_is_the_same_bytes(
    tree: Path, kind: Compression, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to write._INLINE bytes the walk's thread hashes and compresses itself, past it the
    pipeline's threads do: where the switch falls changes no byte, digest or frame."""
    made: list[str] = []
    real, limit = write_module._Worker, write_module._INLINE

    def counted(name: str, *args: Any) -> Any:
        made.append(name)
        return real(name, *args)

    monkeypatch.setattr(write_module, "_Worker", counted)
    results = []
    for inline in (0, 5 << 20, 1 << 40):
        monkeypatch.setattr(write_module, "_INLINE", inline)
        made.clear()
        results.append(_write(tree, kind))
        assert bool(made) == (inline < 1 << 40)
    assert results[0] == results[1] == results[2]
    small = tree / "d00"
    monkeypatch.setattr(write_module, "_INLINE", limit)
    assert sum(f.stat().st_size for f in small.iterdir()) < limit
    made.clear()
    _write(small, kind)
    assert made == []  # a small layer starts no thread


def test_the_diff_id_resumes_after_the_frames_that_did_not_change(
    tree: Path, tmp_path: Path
) -> None:
    """The tar's hash is taken up at the first frame that changed, from the state saved
    at its start; the diff ID is the one a full write gives."""
    if not sha256state.available():
        pytest.skip("no libcrypto in this Python")
    _link_all(tree, tmp_path / "shadow")
    first, digests = _write(tree, Compression.ZSTD)
    assert digests.frames is not None and all(f.state for f in digests.frames.frames)
    assert digests.frames.diff_id == str(digests.diff_id)
    (tree / "d30" / "f05.txt").unlink()  # a new inode (one link): its frame is hashed
    (tree / "d30" / "f05.txt").write_bytes(b"edited\n")
    full = _write(tree, Compression.ZSTD)[1]
    lent = _write(tree, Compression.ZSTD, _lender(tmp_path, first, digests.frames))[1]
    assert lent.diff_id == full.diff_id and lent.digest == full.digest
    assert full.frames is not None and lent.frames == full.frames  # the states too
    pairs = zip(digests.frames.frames, full.frames.frames, strict=False)
    same = next(k for k, (a, b) in enumerate(pairs) if a.identity != b.identity)
    assert lent.skipped == same >= 1  # every frame before the edit, and none after


def test_a_damaged_frame_index_lends_no_hash_state(tree: Path, tmp_path: Path) -> None:
    """A wrong state must never give a wrong diff ID: a damaged record is refused whole
    (its checksum), and one whose states do not end at its diff ID lends none of them."""
    if not sha256state.available():
        pytest.skip("no libcrypto in this Python")
    _link_all(tree, tmp_path / "shadow")
    first, digests = _write(tree, Compression.ZSTD)
    index = digests.frames
    assert index is not None
    record = index.to_json()
    middle = record["frames"][1]
    middle[4] = middle[4][:8] + ("0" if middle[4][8] != "0" else "1") + middle[4][9:]
    with pytest.raises(FormatError):
        FrameIndex.from_json(record)
    (tree / "d30" / "f05.txt").unlink()
    (tree / "d30" / "f05.txt").write_bytes(b"edited\n")
    full = _write(tree, Compression.ZSTD)[1]
    wrong_end = replace(index, diff_id="sha256:" + "0" * 64)  # stale: another tar's
    lent = _write(tree, Compression.ZSTD, _lender(tmp_path, first, wrong_end))[1]
    assert lent.skipped == 0 and lent.diff_id == full.diff_id and lent.reused > 0
