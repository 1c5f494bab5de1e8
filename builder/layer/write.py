"""write_layer: a dir (an overlay upper dir or a plain rootfs) -> a deterministic layer blob.

The stream: tar bytes -> sha256 (diff_id) -> compressor -> sha256 (digest) + size -> out,
the walk in the caller's thread and the rest in threads of their own once the layer passes
a megabyte (see _Pipeline). Nothing is held in memory beyond a few buffers of a megabyte.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import hashlib
import itertools
import mmap
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.layer import entryhelper as eh
from builder.layer import tarwrite as tw
from builder.layer import whiteout as wh
from builder.layer.compression import Compressor, Sink, compressor
from builder.layer.diffhash import DiffHasher
from builder.layer.entryhelper import MAX_FDS, EntryHelper, Made, make_all
from builder.layer.frames import (
    AVG_FRAME,
    IN_ENTRY,
    MAX_FRAME,
    MIN_FRAME,
    Cutter,
    FramedCompressor,
    FrameIndex,
    PreviousBlob,
    Source,
    Sources,
    with_states,
)
from builder.layer.tree import UNSTATTED, Run, Visit, walk_runs
from builder.layer.xattrs import read_named, xattr_names
from builder.record import dataclass

_FLUSH = 1 << 20  # bytes of tar gathered before one hand-off (amortises call overhead)
# Bytes of tar the walk's thread hashes and compresses itself before the pipeline's threads
# start: a RUN step's usual layer, of a few files, is written without any.
_INLINE = 1 << 20
_READ = 1 << 20


@dataclass(frozen=True)
class LayerDigests:
    diff_id: Digest  # sha256 of the uncompressed tar (goes in the image config)
    digest: Digest  # sha256 of the blob as written (goes in the manifest)
    size: int  # bytes of the blob
    media_type: MediaType
    frames: FrameIndex | None = None  # a compressed layer's frames
    reused: int = 0  # frames copied from the previous blob
    skipped: int = 0  # frames the diff ID's hash took from the previous version's states


class _CountingHasher:
    """The last stage: hash and count what the compressor emits, then pass it to `out`."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> Digest:
        return Digest.from_hash(self.hash)

    def write(self, data: bytes, /) -> object:
        self.hash.update(data)
        self.size += len(data)
        done = self.out.write(data)
        if isinstance(done, int) and done < len(data):
            # A raw file writes short when the disk fills (the next write raises ENOSPC);
            # the bytes left over must not be dropped without a word.
            while done < len(data):
                more = self.out.write(data[done:])
                if not isinstance(more, int) or more <= 0:
                    raise OSError(errno.EIO, "the layer's sink stopped taking bytes")
                done += more
        return len(data)


@runtime_checkable
class HashingSink(Protocol):
    """A sink that hashes and counts what it takes (the store's BlobWriter): the blob is
    then hashed once, by it, not a second time here."""

    @property
    def digest(self) -> Digest: ...

    @property
    def size(self) -> int: ...

    def write(self, data: bytes, /) -> object: ...


_CUT = b""  # in the queue: the current frame ends here (a chunk is never empty)


class _Worker:
    """A thread that takes chunks from a bounded queue and hands each to `take`, then calls
    `end` once the stream is over. A failure is kept for the producer (raised at its next
    put or at finish); after one, the rest is drained so the producer never blocks."""

    def __init__(self, name: str, take: Callable[[bytes], object], end: Callable[[], object]):
        self._take, self._end = take, end
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)  # None: the end
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self.queue.get()
            if chunk is None:
                break
            if self.error is not None:
                continue
            try:
                self._take(chunk)
            except BaseException as err:  # handed to the caller's thread
                self.error = err
        if self.error is None:
            try:
                self._end()
            except BaseException as err:
                self.error = err

    def stop(self) -> None:
        if self._thread.is_alive():
            self.queue.put(None)
            self._thread.join()
        # No cycle through the pipeline's bound methods: what it holds (zstd's context and
        # its threads) is freed when the caller lets go, not by a later garbage collection.
        self._take = self._end = _nothing


def _nothing(*_args: object) -> None:
    pass


class _Pipeline:
    """Hash (the diff_id) in one thread and frame, compress and write the tar in another,
    while the caller's thread walks the tree and builds the next chunk: hashlib and
    zstandard release the GIL, and zstd's own workers compress. Chunks pass by bounded
    queues, so memory stays a few megabytes beyond the frame being gathered. A failure
    there (a full disk) is raised as itself to the caller at its next put or at finish."""

    def __init__(self, comp: FramedCompressor | Compressor, tar_hash: DiffHasher) -> None:
        self.tar_hash = tar_hash
        self.index: FrameIndex | None = None
        self.written = 0  # bytes put so far: the stream offset of the next one
        self._comp = comp
        self._cut_sources: collections.deque[Source | None] = collections.deque()
        self._hash_sources: collections.deque[Source | None] = collections.deque()
        # The workers start once the stream passes _INLINE bytes: until then this thread
        # hashes and compresses itself (a small layer is done before two threads would
        # have started). Either way each stage takes the same chunks and cuts in order.
        self._workers: tuple[_Worker, _Worker] | None = None

    def _hash(self, chunk: bytes) -> None:
        if chunk is _CUT:
            self.tar_hash.cut(self._hash_sources.popleft())
        else:
            self.tar_hash.update(chunk)

    def _take(self, chunk: bytes) -> None:
        if chunk is _CUT:
            source = self._cut_sources.popleft()
            if isinstance(self._comp, FramedCompressor):
                self._comp.cut(source)
        else:
            self._comp.write(chunk)

    def _close(self) -> None:
        if isinstance(self._comp, FramedCompressor):
            self.index = self._comp.close()
        else:
            self._comp.close()

    def _check(self) -> None:
        for worker in self._workers or ():
            if worker.error is not None:
                raise worker.error

    def _pass(self, chunk: bytes) -> None:
        """Hand `chunk` (or _CUT) to both stages: inline, or to their threads."""
        if self._workers is None and self.written > _INLINE:
            self._workers = (
                _Worker("layer-diff-id", self._hash, _nothing),
                _Worker("layer-writer", self._take, self._close),
            )
        if self._workers is None:
            self._hash(chunk)
            self._take(chunk)
        else:
            for worker in self._workers:
                worker.queue.put(chunk)

    def put(self, chunk: bytes) -> None:
        self._check()
        if not chunk:
            return  # (an empty chunk would read as a cut)
        self.written += len(chunk)
        self._pass(chunk)

    def cut(self, sources: Sources | None = None) -> None:
        """End the current frame after what was put (with what its bytes came from)."""
        self._check()
        source = None if sources is None else sources.take()
        self._cut_sources.append(source)  # before: the workers take it as soon as
        self._hash_sources.append(source)  # they see the cut
        self._pass(_CUT)

    def finish(self) -> None:
        """End the stream: the compressor is closed, every byte is in the sink."""
        if self._workers is None:
            self._close()
        self.stop()
        self._check()

    def stop(self) -> None:
        for worker in self._workers or ():
            worker.stop()
        if isinstance(self._comp, FramedCompressor):
            self._comp.abandon()


def write_layer(
    src: Path,
    out: Sink,
    compression: Compression = Compression.ZSTD,
    *,
    mtime_clamp: int | None = None,
    level: int | None = None,
    previous: PreviousBlob | None = None,
    identify: bool = False,
) -> LayerDigests:
    """Write the layer tar of `src` (whiteouts converted to OCI form) compressed into `out`.

    Entries are in depth-first order with siblings sorted by name (as `tar --sort=name`),
    so parents precede children. `mtime_clamp` (SOURCE_DATE_EPOCH) caps every mtime.
    A compressed layer is a run of frames (layer/frames); `previous`, a blob of an earlier
    version of the layer, lends the frames the two have in common. `identify`: the frame
    index will be kept (for a later version to reuse), so compute its identities.
    """
    blob = out if isinstance(out, HashingSink) else _CountingHasher(out)
    identify = identify or previous is not None  # (matching needs this blob's own too)
    sources = Sources() if identify and compression is not Compression.NONE else None
    comp: FramedCompressor | Compressor
    if compression is Compression.NONE:
        comp = compressor(blob, compression, level)
    else:
        comp = FramedCompressor(blob, compression, level, previous, identify=identify)
    keep = identify and compression is not Compression.NONE
    pipe = _Pipeline(comp, DiffHasher(keep, None if previous is None else previous.index))
    try:
        _write_tar(src, pipe, mtime_clamp, sources)
        pipe.finish()
    finally:
        pipe.stop()
    diff_id = Digest.from_hex(pipe.tar_hash.hexdigest())
    if pipe.index is not None and len(pipe.tar_hash.states) == len(pipe.index.frames):
        pipe.index = with_states(pipe.index, pipe.tar_hash.states, str(diff_id))
    return LayerDigests(
        diff_id=diff_id,
        digest=blob.digest,
        size=blob.size,
        media_type=MediaType.for_layer(compression),
        frames=pipe.index,
        reused=comp.reused if isinstance(comp, FramedCompressor) else 0,
        skipped=pipe.tar_hash.skipped,
    )


def _write_tar(
    src: Path, pipe: _Pipeline, mtime_clamp: int | None, sources: Sources | None
) -> None:
    """Walk `src` and put its tar stream into `pipe`, in chunks of about _FLUSH bytes.

    A layer of 50,000 small files is bound by the per-entry work, kept to what the bytes
    need: one lstat, one open and one flistxattr on that fd for a regular file (the xattr
    calls of other kinds go through /proc, by name), one read, and a ustar header from
    cached fields when no PAX record is needed; a file system that cannot hold xattrs is
    asked once, not once per entry. The walk lists each dir once (bytes names, d_type) and
    gives its regular files as Runs of names: no Python object or step per file here. It
    runs a batch ahead of the writing, and once a layer has more than one batch of entries
    a second process (layer/entryhelper) makes the entries of the plain small files of a
    batch's Runs while this thread walks on and makes other batches' (the syscalls of one
    Python thread alone took as long as `tar | zstd`). The bytes do not depend on it (the
    helper makes only entries whose bytes are fixed by their lstat, and this thread makes
    every other one, in order).
    """
    w = _Writer(pipe, mtime_clamp, sources)
    # The walk is iterative and reaches entries by name from one open dir (any depth, any
    # path length). Reading errors are the source's; writing errors (a full disk) are not
    # caught here, so they reach the caller as what they are.
    try:
        visits = walk_runs(src, _RUN)  # regular files not lstat'ed: the maker does
        first = next(visits, None)
    except OSError as err:
        raise LayerError(f"cannot read layer source {src}: {err.strerror}") from None
    helper: EntryHelper | None = None
    inflight: collections.deque[_Batch] = collections.deque()  # gathered, not yet written
    waiting: collections.deque[_Batch] = collections.deque()  # sent, not yet answered
    try:
        more = first is not None
        while more or inflight:
            if helper is not None and waiting:  # the answers that are there
                try:
                    while waiting and helper.answered():
                        batch = waiting.popleft()
                        reply = helper.take()
                        if not batch.written:  # (else it was made here meanwhile)
                            batch.reply = reply
                except OSError:  # gone: what it had is made here
                    helper.close()
                    helper, waiting = None, collections.deque()
            head = inflight[0] if inflight else None
            if head is not None and (head.reply is not None or head not in waiting):
                inflight.popleft()
                try:
                    w.write_batch(head, head.reply)
                finally:
                    head.written = True
                    head.release()
                continue
            # Nothing to write yet: walk on, while the helper makes the head.
            if more and len(inflight) < _AHEAD and _held(inflight) <= _HELD - MAX_FDS:
                batch = _Batch()
                more = batch.gather(first, visits, w)
                first = batch.next
                if helper is None and more and not w.tried:
                    w.tried = True  # more than a batch: worth a process (~20 ms to start)
                    with contextlib.suppress(OSError):  # (then this thread makes them all)
                        helper = EntryHelper()
                if helper is not None and len(waiting) < _DEPTH and helper.ready():
                    try:
                        helper.submit(batch.fds, batch.request(w))
                        waiting.append(batch)
                    except OSError:  # gone: this thread goes on alone
                        helper.close()
                        helper, waiting = None, collections.deque()
                elif head is not None:  # the helper has the head and its fill: make it here
                    batch.reply = w.make(batch)
                inflight.append(batch)
                continue
            # The helper is late with the head, and this thread has nothing else to do
            # (a busy machine runs it later): wait a moment, then make the head here too.
            if helper is None or not helper.wait(_PATIENCE):
                assert head is not None
                head.reply = w.make(head)
    finally:
        for batch in inflight:
            batch.release()
        if helper is not None:
            helper.close()
    w.buf += tw.END_OF_ARCHIVE
    if sources is not None:
        sources.update(tw.END_OF_ARCHIVE)
    pipe.put(bytes(w.buf))
    pipe.cut(sources)


_DEPTH = 4  # batches the helper holds (its replies fit its socket buffer: it never waits)
# Batches gathered and not yet written, at most, and the dir fds they hold: room for this
# thread to make more of its own while the helper is late (on a busy machine).
_AHEAD = 16
_HELD = 8 * MAX_FDS
# Seconds this thread, with nothing else to do, waits for the helper before it makes the
# helper's batch too: what it does then is done twice, so not at the first hiccup.
_PATIENCE = 0.02
_BATCH = 512  # entries of a batch, about (a Run may take it past)
_RUN = 128  # names of a Run, at most (at most 32 KiB of names, and its prefix)
# Bytes of the names a request carries, at most (or its one Run's): the requests the
# helper has not read yet must fit the socket's default buffer (212,992 bytes), or this
# thread could wait to send one while the helper waits to send a reply (its buffer, of a
# reply's size where wmem_max allows, may be smaller).
_BATCH_NAMES = 48 << 10


class _Batch:
    """Entries the walk has reached and the writing not yet: their dirs are held open (a
    dup each, since the walk closes its own fd as it moves on). Its Runs (regular files by
    their dir's word, not lstat'ed) are the request to the helper; its Visits (every other
    kind) are made here."""

    __slots__ = ("fault", "fds", "items", "next", "reply", "runs", "written")

    def __init__(self) -> None:
        self.items: list[Visit | Run] = []
        self.fds: list[int] = []
        self.runs: list[eh.Run] = []
        self.written = False  # into the stream
        self.reply: Made | None = None  # its Runs' plain entries, made (by the helper or here)
        self.fault: LayerError | None = None  # the walk's, raised when its turn comes
        self.next: Visit | Run | None = None  # taken from the walk, not in this batch

    def gather(self, first: Visit | Run | None, items: Iterator[Visit | Run], w: _Writer) -> bool:
        """Take entries from the walk (`first`, then `items`) until the batch is full;
        False when the walk is over."""
        held = last = -1
        entries = names = 0
        item = first
        fds, runs = self.fds, self.runs
        while entries < _BATCH and names < _BATCH_NAMES:
            if item is None:
                try:
                    item = next(items, None)
                except OSError as err:
                    where = os.fsdecode(w.last)
                    self.fault = LayerError(f"cannot read below {where}: {err.strerror}")
                    return False
                if item is None:
                    return False
            size = 0
            if item.__class__ is Run:
                assert isinstance(item, Run)
                size = len(item.prefix) + sum(map(len, item.names))
                if self.items and names + size > _BATCH_NAMES:
                    self.next = item  # the next batch's first
                    break
            # Two items in a row at one depth are in one dir (the walk visits a dir
            # before its children, so a move to another dir passes by another depth).
            if item.depth != last:
                if len(fds) == MAX_FDS:
                    self.next = item  # the next batch's first
                    break
                last = item.depth
                held = os.dup(item.dir_fd)
                fds.append(held)
            item.dir_fd = held
            self.items.append(item)
            if item.__class__ is Run:
                assert isinstance(item, Run)
                runs.append((len(fds) - 1, item.prefix, item.names))
                entries += len(item.names)
                names += size
                w.last = item.prefix + item.names[-1]
            else:
                assert isinstance(item, Visit)
                entries += 1
                w.last = item.path
            item = None
        return True

    def request(self, w: _Writer) -> eh.Request:
        return (w.clamp, AVG_FRAME, w.sources is not None, self.runs)

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


class _Writer:
    """The tar stream's state across entries: the buffer, the frame cutter, the links."""

    def __init__(self, pipe: _Pipeline, mtime_clamp: int | None, sources: Sources | None):
        self.pipe, self.sources = pipe, sources
        self.buf = bytearray()
        self.cutter = Cutter()
        self.links: dict[tuple[int, int], bytes] = {}
        self.no_xattrs: set[int] = set()  # st_dev of file systems that refused listxattr
        self.clamp = _NO_CLAMP if mtime_clamp is None else mtime_clamp
        self.tried = False  # whether a helper was started (or failed to)
        self.last = b""  # the path of the walk's last entry (for its errors)

    def make(self, batch: _Batch) -> Made:
        """The batch's plain entries made here, as the helper makes them."""
        return make_all(batch.fds, batch.request(self), self.no_xattrs)

    def write_batch(self, batch: _Batch, reply: Made | None) -> None:
        """The batch's entries, in order: the plain ones of its Runs as made (by the
        helper, or here), each of the rest made here now."""
        if reply is None:
            reply = self.make(batch)
        lengths, declined, candidates = reply.lengths, reply.declined, reply.candidates
        offsets = list(itertools.accumulate(lengths, initial=0))  # entry i's: [i], [i + 1]
        view = memoryview(reply.data)
        first = 0  # the number of a Run's first entry among the request's
        taken = 0  # of `declined`
        linked, links = reply.linked, self.links
        k = 0  # of `linked`
        for item in batch.items:
            if item.__class__ is not Run:
                assert isinstance(item, Visit)
                self._one(item)
                continue
            assert isinstance(item, Run)
            i, end = first, first + len(item.names)
            while i < end:
                stop = min(declined[taken] if taken < len(declined) else end, end)
                # The made entries of files with more links, up to there, in walk order:
                # an inode's first name is kept (and taken for its later ones); a later
                # name ends the span, to be made here as a link entry (the tar's rule).
                relink = False
                while k < len(linked) and linked[k][0] < stop:
                    j, dev, ino = linked[k]
                    if (dev, ino) in links:
                        stop, relink = j, True
                        break
                    links[dev, ino] = item.prefix + item.names[j - first]
                    k += 1
                if i < stop:
                    self._put_made(view, offsets, i, stop, candidates, reply.inodes)
                    i = stop
                if i < end:  # not made (it says why, or is gone), or a link: made here
                    if relink:
                        k += 1
                    else:
                        taken += 1
                    name = item.names[i - first]
                    self._one(Visit(item.dir_fd, name, item.prefix + name, UNSTATTED, item.depth))
                    i += 1
            first = end
        if batch.fault is not None:
            raise batch.fault

    def _put_made(
        self,
        view: memoryview,
        offsets: list[int],
        lo: int,
        hi: int,
        candidates: list[int],
        inodes: list[tuple[int, int, int, int]],
    ) -> None:
        """Entries lo..hi-1 of a reply (made elsewhere, `view[offsets[lo]:offsets[hi]]`)
        into the stream, with the frame cuts Cutter.after_entry would make after each of
        them: after the first whose end is MIN_FRAME past the frame's start and which is a
        candidate (the helper has its crc) or is MAX_FRAME past it. No step per entry."""
        pipe, buf, cutter, sources = self.pipe, self.buf, self.cutter, self.sources
        base = pipe.written + len(buf) - offsets[lo]  # the stream offset of view[0]
        at = lo
        while at < hi:
            # The entries ending past the frame's minimum, and past its maximum.
            low = bisect.bisect_left(offsets, cutter.start + MIN_FRAME - base, at + 1, hi + 1) - 1
            high = bisect.bisect_left(offsets, cutter.start + MAX_FRAME - base, low + 1, hi + 1) - 1
            c = bisect.bisect_left(candidates, low)
            cut = min(candidates[c] if c < len(candidates) else hi, high)
            last = min(cut, hi - 1)
            if sources is not None:
                _note_sources(sources, view, offsets, inodes, at, last + 1)
            buf += view[offsets[at] : offsets[last + 1]]
            at = last + 1
            if cut < hi:
                cutter.start = base + offsets[at]  # (what after_entry sets)
                pipe.put(bytes(buf))
                buf.clear()
                pipe.cut(sources)
        if len(buf) >= _FLUSH:
            pipe.put(bytes(buf))  # a copy of a megabyte costs less than a call per entry
            buf.clear()

    def _one(self, visit: Visit) -> None:
        """One entry made here, and the frame's cut after it if it ends one."""
        pipe, buf, cutter = self.pipe, self.buf, self.cutter
        entry_start = pipe.written + len(buf)
        self._entry(visit, entry_start)
        end = pipe.written + len(buf)
        if end == entry_start:
            return  # (a file removed since the walk read its dir: no entry)
        if end - cutter.start >= MIN_FRAME and _cut_here(cutter, buf, entry_start, end, pipe):
            pipe.put(bytes(buf))
            buf.clear()
            pipe.cut(self.sources)
        elif len(buf) >= _FLUSH:
            pipe.put(bytes(buf))
            buf.clear()

    def _entry(self, visit: Visit, entry_start: int) -> None:
        """Make one entry here (anything the helper did not)."""
        buf, sources, links, no_xattrs = self.buf, self.sources, self.links, self.no_xattrs
        mark = len(buf)
        st = visit.st
        if st is UNSTATTED:  # the walk's lstat, made here
            try:
                st = visit.st = os.lstat(visit.name, dir_fd=visit.dir_fd)
            except FileNotFoundError:
                return  # removed since its dir was read: skipped, as the walk skips it
            except OSError as err:
                raise LayerError(f"cannot read {os.fsdecode(visit.path)}: {err.strerror}") from None
            if stat.S_ISDIR(st.st_mode):  # its children were not walked
                raise LayerError(f"{os.fsdecode(visit.path)}: the tree changed while it was walked")
        mode = st.st_mode
        mtime = min(max(int(st.st_mtime), 0), self.clamp)
        name = visit.path
        if stat.S_ISREG(mode) and (st.st_nlink == 1 or (st.st_dev, st.st_ino) not in links):
            try:
                fd = os.open(visit.name, _FILE_FLAGS, dir_fd=visit.dir_fd)
            except OSError as err:
                raise LayerError(f"cannot read {os.fsdecode(name)}: {err.strerror}") from None
            try:
                if st.st_dev in no_xattrs:
                    xattrs = _NONE
                else:
                    try:  # inline: the common answer, none
                        listed = os.listxattr(fd)
                        xattrs = _xattrs(fd, st.st_dev, no_xattrs, name) if listed else _NONE
                    except OSError:  # again, through the one place that knows the errors
                        xattrs = _xattrs(fd, st.st_dev, no_xattrs, name)
                whiteout = (xattrs or visit.name.startswith(_WH)) and _special(
                    visit, xattrs, mtime, buf
                )
                if not whiteout:
                    size = st.st_size
                    if st.st_nlink > 1:
                        links[st.st_dev, st.st_ino] = name
                    kept = _kept(xattrs) if xattrs else ()
                    buf += tw.header(name, tw.REGTYPE, mode, st.st_uid, st.st_gid, size, mtime,
                                     xattrs=kept)  # fmt: skip
                    if sources is not None:
                        sources.update(buf[mark:])
                        mark = -1  # the data is known by its inode, not by its bytes
                    if size:
                        # A small file in one read; a big one (or a short read) in chunks.
                        data = os.read(fd, size) if size < _FLUSH else b""
                        buf += data
                        if len(data) < size:
                            _copy_file(fd, name, size - len(data), buf, self.pipe, self.cutter,
                                       entry_start, sources, st)  # fmt: skip
                        elif sources is not None:
                            sources.file(st, 0, size)
                        buf += tw.padding(size)
            finally:
                os.close(fd)
        else:
            xattrs = _xattrs(visit.proc_path, st.st_dev, no_xattrs, name)
            if not _special(visit, xattrs, mtime, buf):
                _other(visit, xattrs, mtime, buf, links)
        if sources is not None and mark >= 0:
            sources.update(buf[mark:])


_NO_CLAMP = 1 << 62
_NONE: dict[str, bytes] = {}  # no xattrs (shared, never changed)
_WH = wh.WHITEOUT_PREFIX.encode()
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def _xattrs(target: bytes | int, dev: int, no_xattrs: set[int], name: bytes) -> dict[str, bytes]:
    if dev in no_xattrs:
        return {}
    try:
        names = xattr_names(target)
        if names is None:
            no_xattrs.add(dev)
            return {}
        return read_named(target, names) if names else {}
    except OSError as err:
        raise LayerError(f"cannot read {os.fsdecode(name)}: {err.strerror}") from None


def _kept(xattrs: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The xattrs a layer carries: all but overlayfs' own, sorted."""
    return sorted((k, v) for k, v in xattrs.items() if not wh.is_overlay_xattr(k))


def _special(visit: Visit, xattrs: dict[str, bytes], mtime: int, buf: bytearray) -> bool:
    """Refuse what a layer cannot hold; write an overlay whiteout in its OCI form. True
    when the entry is done (a whiteout)."""
    name, st = visit.path, visit.st
    feature = wh.unrepresentable(xattrs)
    if feature is not None:
        raise LayerError(
            f"{os.fsdecode(name)}: overlayfs {feature} cannot be expressed in a layer "
            f"(mount the overlay with {feature}{'_dir' if feature == 'redirect' else ''}=off)"
        )
    if wh.is_overlay_whiteout(st, xattrs):
        prefix = name[: len(name) - len(visit.name)]
        whiteout = prefix + _WH + visit.name
        buf += tw.header(whiteout, tw.REGTYPE, 0o600, st.st_uid, st.st_gid, 0, mtime)
        return True
    if visit.name.startswith(_WH):
        raise LayerError(
            f"{os.fsdecode(name)}: a file named '{wh.WHITEOUT_PREFIX}*' cannot be stored "
            "in a layer (OCI reserves the prefix for deletions)"
        )
    return False


def _other(
    visit: Visit,
    xattrs: dict[str, bytes],
    mtime: int,
    buf: bytearray,
    links: dict[tuple[int, int], bytes],
) -> None:
    """Every entry but a regular file's first link."""
    name, st = visit.path, visit.st
    mode = st.st_mode
    kept = _kept(xattrs) if xattrs else ()
    perm = stat.S_IMODE(mode)
    if stat.S_ISDIR(mode):
        buf += tw.header(name + b"/", tw.DIRTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                         xattrs=kept)  # fmt: skip
        if wh.is_overlay_opaque(xattrs):
            buf += tw.header(name + b"/" + wh.OPAQUE_MARKER.encode(), tw.REGTYPE,
                             perm & 0o777, st.st_uid, st.st_gid, 0, mtime)  # fmt: skip
    elif stat.S_ISREG(mode):  # a further link to a file already written
        buf += tw.header(name, tw.LNKTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                         links[st.st_dev, st.st_ino], xattrs=kept)  # fmt: skip
    elif stat.S_ISLNK(mode):
        target = os.readlink(visit.name, dir_fd=visit.dir_fd)
        buf += tw.header(name, tw.SYMTYPE, perm, st.st_uid, st.st_gid, 0, mtime, target,
                         xattrs=kept)  # fmt: skip
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = tw.CHRTYPE if stat.S_ISCHR(mode) else tw.BLKTYPE
        buf += tw.header(name, kind, perm, st.st_uid, st.st_gid, 0, mtime,
                         devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                         xattrs=kept)  # fmt: skip
    elif stat.S_ISFIFO(mode):
        buf += tw.header(name, tw.FIFOTYPE, perm, st.st_uid, st.st_gid, 0, mtime,
                         xattrs=kept)  # fmt: skip
    # Sockets are left out, as tar and docker do: a socket is only meaningful while its
    # process lives, and the format has no type for it.


def _held(batches: collections.deque[_Batch]) -> int:
    return sum(len(batch.fds) for batch in batches)


def _note_sources(
    sources: Sources,
    view: memoryview,
    offsets: list[int],
    inodes: list[tuple[int, int, int, int]],
    lo: int,
    hi: int,
) -> None:
    """Made entries lo..hi-1 into the frame's sources: each header's bytes, and the data
    by its inode (and its link count: Sources.file tells linked frames by it)."""
    for i in range(lo, hi):
        dev, ino, size, nlink = inodes[i]
        start = offsets[i]
        sources.update(view[start : offsets[i + 1] - size - len(tw.padding(size))])
        sources.file(os.stat_result((0, ino, dev, nlink, 0, 0, size, 0, 0, 0)), 0, size)


def _cut_here(cutter: Cutter, buf: bytearray, entry_start: int, end: int, pipe: _Pipeline) -> bool:
    """Whether the frame ends after this entry (frames.Cutter, from its first block)."""
    at = entry_start - pipe.written
    head = bytes(buf[at : at + 512]) if at >= 0 else cutter.head
    return cutter.after_entry(head, entry_start, end)


def _copy_file(
    fd: int,
    name: bytes,
    size: int,
    buf: bytearray,
    pipe: _Pipeline,
    cutter: Cutter,
    entry_start: int,
    sources: Sources | None,
    st: os.stat_result,
) -> None:
    """Append exactly `size` bytes of the open file to the stream: a small file's into
    `buf`; a big one's read chunks go to the pipe as they are, after what `buf` holds, with
    a frame cut every IN_ENTRY bytes of its data (counted from the data's start)."""
    big = size >= _FLUSH
    if big and buf:
        at = entry_start - pipe.written
        cutter.head = bytes(buf[at : at + 512])  # the entry's start leaves with `buf`
        pipe.put(bytes(buf))
        buf.clear()
    remaining = size
    since_cut = 0  # bytes of this file's data since its start or its last cut
    done = 0  # of its data, before this call's (a short first read)
    # A linked file (a COPY layer's, engine/relink: an immutable unpacked layer's inode)
    # is mapped, not read: its pages go to the hashes and the compressor as they are in
    # the page cache, where reads cost a fresh zeroed buffer and a copy per megabyte
    # (0.16 s of CPU for big-context's 200 MB, on the walk's thread).
    mapped = _mapped(fd, size) if big and sources is not None and st.st_nlink > 1 else None
    while remaining:
        if mapped is not None:
            chunk: bytes | memoryview = next(mapped)
        else:
            chunk = os.read(fd, min(remaining, _READ, IN_ENTRY - since_cut))
        if not chunk:
            raise LayerError(f"{os.fsdecode(name)} shrank while it was being archived")
        remaining -= len(chunk)
        if big:
            pipe.put(chunk)  # type: ignore[arg-type]  # (a memoryview is taken as bytes)
            since_cut += len(chunk)
            if since_cut == IN_ENTRY and remaining:
                if sources is not None:
                    sources.file(st, done, since_cut)
                pipe.cut(sources)
                cutter.cut_at(pipe.written)
                done += since_cut
                since_cut = 0
        else:
            buf += chunk
    if sources is not None:  # the data left since the last cut (a small file's: all of it)
        sources.file(st, done, size - done) if big else sources.file(st, 0, st.st_size)


def _mapped(fd: int, size: int) -> Iterator[memoryview] | None:
    """The file's `size` bytes as one view per IN_ENTRY-sized map (a chunk never spans a
    cut: cuts fall every IN_ENTRY bytes of the data, from its start), or None when the
    file is not `size` bytes long now (read instead: a short file is an error there, where
    a map of it would be a SIGBUS). The maps are private and writable only so that ctypes
    can take their address (layer/sha256state); nothing writes to them.

    A whole map is one chunk, not a megabyte of it: each chunk is a queue hand-off to the
    pipeline's two threads and a GIL hand-back after each C call on it (big-context's
    200 MB: ~26 instead of ~400). The chunk's size costs no memory: its pages are the page
    cache's, held by the map either way until the last view of it is let go. (What the
    walk of a rebuilt COPY layer waits for is not these hand-offs but CPU: its threads
    need about 0.7 s of it, mostly the two sha256 passes and the blob's copy; see
    ARCHITECTURE.md, "layer".)"""
    if os.fstat(fd).st_size != size:
        return None
    return _windows(fd, size)


def _windows(fd: int, size: int) -> Iterator[memoryview]:
    offset = 0
    while offset < size:
        length = min(IN_ENTRY, size - offset)
        window = mmap.mmap(fd, length, mmap.MAP_PRIVATE, offset=offset)  # (read + write)
        with contextlib.suppress(OSError):  # (an older kernel: the pages fault in instead)
            window.madvise(_MADV_POPULATE_READ)  # mapped in one call, shared, not copied
        view = memoryview(window)
        yield view
        del view, window  # unmapped once the last chunk is let go (the queues hold them)
        offset += length


_MADV_POPULATE_READ = 22  # Linux 5.14 (not in Python 3.11's mmap module)
