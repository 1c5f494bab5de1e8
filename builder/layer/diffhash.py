"""DiffHasher: a layer's diff ID (the sha256 of its tar), which resumes after what did not
change.

A rebuilt COPY layer's tar is, up to the first edited file, the previous version's tar.
The hash state after each frame is kept in the frame index (layer/frames, Frame.state),
so this hasher skips the frames at the head of the stream that the previous version had
at the same places, known by their sources (frames.Sources: the files are the previous
layer's own inodes, which are immutable), and takes up the hash at the first frame that
differs, from the state the previous version saved at its start. Everything from there on
is hashed as it comes. Without a previous index (or without OpenSSL's SHA256 through
layer/sha256state) it is a plain streaming hash.

A saved state is only used when the whole index vouches for it: every state reads as one
for its frame's end offset, the index's own checksum holds (frames.FrameIndex.from_json),
and the last state finishes to the diff ID the index was written for.
"""

from __future__ import annotations

import hashlib

from builder.layer import sha256state
from builder.layer.frames import Frame, FrameIndex, Source


def resumable(index: FrameIndex | None) -> tuple[Frame, ...]:
    """The frames of `index` whose saved states may be resumed from: all of them, or none."""
    if index is None or not index.frames or not index.diff_id or not sha256state.available():
        return ()
    offset = 0
    try:
        for frame in index.frames:
            offset += frame.size
            last = sha256state.Sha256.resume(frame.state, offset)
    except sha256state.StateError:
        return ()
    if "sha256:" + last.hexdigest() != index.diff_id:
        return ()
    return index.frames


class DiffHasher:
    """Takes the tar stream's chunks and its frame cuts (in the hasher thread); `states`
    are the hash's states at each frame's end (empty when they cannot be saved)."""

    def __init__(self, keep_states: bool, previous: FrameIndex | None = None) -> None:
        self._saving = keep_states and sha256state.available()
        self._prev = resumable(previous) if self._saving else ()
        self._intact = bool(self._prev)  # every frame so far is the previous version's
        self._hash: sha256state.Sha256 | hashlib._Hash = (
            sha256state.Sha256() if self._saving else hashlib.sha256()
        )
        self._pending: list[bytes] = []  # the current frame's, while it may be skipped
        self._size = 0  # bytes of the current frame
        self._offset = 0  # where it starts
        self.states: list[str] = []
        self.skipped = 0  # frames not hashed (for tests and figures)

    def update(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._intact:
            self._pending.append(chunk)
        else:
            self._hash.update(chunk)

    def cut(self, source: Source | None) -> None:
        """The current frame ends (an empty one is no frame, as in FramedCompressor)."""
        if not self._size:
            return
        if self._intact:
            k = len(self.states)
            prev = self._prev[k] if k < len(self._prev) else None
            same = (
                prev is not None
                and source is not None
                and source[1]
                and prev.source == source[0]
                and prev.size == self._size
            )
            if same:
                assert prev is not None
                self.states.append(prev.state)
                self.skipped += 1
                self._pending = []
                self._offset += self._size
                self._size = 0
                return
            self._intact = False
            if self.states:
                self._hash = sha256state.Sha256.resume(self.states[-1], self._offset)
            for chunk in self._pending:
                self._hash.update(chunk)
            self._pending = []
        if self._saving:
            assert isinstance(self._hash, sha256state.Sha256)
            self.states.append(self._hash.save())
        self._offset += self._size
        self._size = 0

    def hexdigest(self) -> str:
        if self._size:  # bytes after the last cut: a frame of their own
            self.cut(None)
        if self._intact and self.states:  # every frame was skipped: the last state is all
            return sha256state.Sha256.resume(self.states[-1], self._offset).hexdigest()
        return self._hash.hexdigest()
