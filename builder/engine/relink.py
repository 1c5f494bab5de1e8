"""Incremental COPY: a file the previous version of the layer holds unchanged is not copied
again, but hardlinked to that layer's unpacked copy.

Unpacked layers are immutable (overlayfs copies a lower file up before any change, and no
writer of ours opens one for writing), so two layers may share an inode. The COPY writer
resolves the destination of each file it may not need to copy (copier.copy_into_root
`deferred`), makes its parent dir as writing would, and reports where each file landed.
Here, outside the sandbox (a hardlink cannot cross the overlay mount), each deferred file
becomes a link to the previous layer's file at the same real path when that file holds
the same bytes (by the digest recorded for it) and has exactly the mode, owner, mtime and
(no) xattrs the copy would have: the link sets no metadata, so the shared inode is never
changed but for its link count. Any other deferred file is copied from the context, with
the metadata the writer would have given it. Parent mtimes are put back as they were.
A COPY of many files with no previous version defers them all, to be copied here in
lanes: the same files, written by several threads instead of the writer's one.

The previous version is found by the step's lineage: its key without the files' digests.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from builder.engine import cachekey
from builder.engine.context import CopyItem
from builder.engine.copier import Report, copy_bytes, finish_file, read_report, remove_non_dir
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.layer.tree import open_below
from builder.record import dataclass
from builder.store import StepRecord, Store


@dataclass(frozen=True)
class Lineage:
    """The last layer a COPY with this lineage key made, and what each of its files holds."""

    step: str  # the record key of its StepRecord
    files: Mapping[str, str]  # real path in the layer (no leading '/') -> sha256 hex

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "files": dict(self.files)}

    @classmethod
    def from_json(cls, value: Any) -> Lineage:
        if not isinstance(value, dict):
            raise FormatError("lineage: not a JSON object")
        step, files = value.get("step"), value.get("files")
        if not isinstance(step, str) or not isinstance(files, dict):
            raise FormatError("lineage: 'step' and 'files' are needed")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise FormatError("lineage: 'files' maps paths to digests")
        return cls(step, files)


def lineage_key(parent_key: str, keyword: str, payload: Mapping[str, object]) -> str:
    """The step's key without what its files hold: the same for every version of the step."""
    rest = {k: v for k, v in payload.items() if k != "files"}
    return cachekey.chain(parent_key, f"{keyword} lineage", rest)


@dataclass(frozen=True)
class Previous:
    layer: Descriptor  # its blob, which lends its frames (layer/frames)
    diff_id: Digest
    root: Path  # its unpacked dir
    files: Mapping[str, str]


def previous(store: Store, key: str) -> Previous | None:
    """The previous version of the layer, if its record and unpacked dir are still there."""
    lineage = store.cache.get(key, Lineage)
    if lineage is None:
        return None
    record = store.cache.get(lineage.step, StepRecord)
    if record is None or record.layer is None or record.diff_id is None:
        return None
    if not store.layers.has(record.diff_id):
        return None
    return Previous(record.layer, record.diff_id, store.paths.layer(record.diff_id), lineage.files)


def candidates(items: list[CopyItem], prev: Previous | None) -> frozenset[int]:
    """The items whose files the COPY writer defers to the host: files whose bytes the
    previous layer holds somewhere (where they land is known only once the writer has
    resolved their destinations), to be linked; with no previous layer, every file when
    there are LANES_FROM of them, to be copied in lanes (see _in_lanes: creating a file
    is the kernel's work, and on an ext4 without a journal it can take a millisecond)."""
    files = [i for i, item in enumerate(items) if item.entry.kind == "file"]
    if prev is None:
        return frozenset(files) if len(files) >= LANES_FROM and _lanes() > 1 else frozenset()
    held = set(prev.files.values())
    return frozenset(i for i in files if items[i].entry.digest in held)


class Incremental:
    """One COPY step's incremental state: its lineage, the previous version (if any), the
    items the writer defers, and the anonymous file the writer reports into.

    Off (`key` None) for an ADD that unpacks (an archive may write over any file); under
    --no-cache (`reuse` False) nothing is linked (many files are still copied in lanes),
    but the layer still records its lineage and frames for the builds after it."""

    def __init__(self, store: Store, key: str | None, items: list[CopyItem], reuse: bool) -> None:
        self.store, self.key, self.items = store, key, items
        self.previous = previous(store, key) if key is not None and reuse else None
        self.deferred = frozenset() if key is None else candidates(items, self.previous)
        self.report: Report | None = None
        # Where the writer says each file landed: an anonymous file, gone when closed.
        flags = os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
        self.report_fd = -1 if key is None else os.open(store.paths.tmp, flags, 0o600)

    @property
    def previous_blob(self) -> Descriptor | None:
        return None if self.previous is None else self.previous.layer

    def read(self) -> None:
        """Take the writer's report (after it succeeded)."""
        if self.report_fd >= 0:
            self.report = read_report(self.report_fd)

    def close(self) -> None:
        if self.report_fd >= 0:
            os.close(self.report_fd)
            self.report_fd = -1

    def place(self, upper: Path, context: Path) -> int:
        """The deferred files into the upper dir (place_deferred); OSError as it comes."""
        if self.report is None:
            return 0
        return place_deferred(upper, self.previous, self.report, self.items, context)

    def remember(self, step: str) -> None:
        """Record the layer just committed (its StepRecord is under `step`) as the
        lineage's latest version."""
        if self.key is None or self.report is None:
            return
        files = {}
        for path, (index, _mode, _deferred) in self.report.files.items():
            with contextlib.suppress(UnicodeEncodeError):  # JSON holds UTF-8 names only
                path.encode()
                files[path] = self.items[index].entry.digest
        self.store.cache.put(self.key, Lineage(step, files))


def place_deferred(
    upper: Path, prev: Previous | None, report: Report, items: list[CopyItem], context: Path
) -> int:
    """Write each file the COPY writer deferred into `upper`: a link to the previous layer's
    copy when that one is the same file, else a copy from the context. Returns how many
    were linked."""
    todo: dict[str, list[tuple[str, int, int]]] = {}
    for path, (index, mode, deferred) in sorted(report.files.items()):
        if deferred:
            parent, _, name = path.rpartition("/")
            todo.setdefault(parent, []).append((name, index, mode))
    if not todo:
        return 0
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    upper_fd = os.open(upper, flags)
    prev_fd = -1 if prev is None else os.open(prev.root, flags)
    context_fd = os.open(context, flags)

    def place_dirs(dirs: _Dirs) -> int:
        linked = 0
        for parent, group in dirs:
            place = _Placer(upper_fd, prev_fd, context_fd, parent, report.owner)
            try:
                for name, index, mode in group:
                    entry = items[index].entry
                    path = f"{parent}/{name}" if parent else name
                    same = prev is not None and prev.files.get(path) == entry.digest
                    if same and place.link(name, mode, entry.size, entry.mtime_ns):
                        linked += 1
                    else:
                        place.copy(name, mode, entry.mtime_ns, entry.path)
            finally:
                place.close()
        return linked

    try:
        return _in_lanes(place_dirs, list(todo.items()))
    finally:
        for fd in (upper_fd, prev_fd, context_fd):
            if fd >= 0:
                os.close(fd)


# Deferred files at least this many are placed in lanes, a thread each, a dir each at a
# time: the system calls release the GIL, and what they cost is the kernel's CPU. A link
# is a metadata update (5,000 of them 0.2 s in one thread); a new file's inode, on an ext4
# without a journal, up to a millisecond more: its allocator scans past every inode of
# the group freed in the last minute or more (ialloc.c's recently_deleted), which a build
# after another's removal meets 5,000 times in a row (measured here: 0.85 ms of system
# time a file in one thread, 0.36 in two; no better in four on 2 cores). Dirs are
# independent (a placer only touches its own dir and its mtime).
LANES_FROM = 512
MAX_LANES = 4


def _lanes() -> int:
    return min(os.cpu_count() or 1, MAX_LANES)


_Dirs = list[tuple[str, list[tuple[str, int, int]]]]  # (parent, [(name, item, mode)])


def _in_lanes(place_dirs: Callable[[_Dirs], int], dirs: _Dirs) -> int:
    """`place_dirs` over `dirs`, in lanes (one per core, up to MAX_LANES) of about as many
    files each when there are enough of them: the first in this thread, each other in a
    thread of its own; the first failure is raised once every lane has stopped."""
    count = _lanes()
    if sum(len(group) for _, group in dirs) < LANES_FROM or count < 2:
        return place_dirs(dirs)
    import threading

    lanes: list[_Dirs] = [[] for _ in range(count)]
    sizes = [0] * count
    for parent, group in dirs:
        lane = sizes.index(min(sizes))
        lanes[lane].append((parent, group))
        sizes[lane] += len(group)
    results: list[int] = []
    errors: list[BaseException] = []

    def other(lane: _Dirs) -> None:
        try:
            results.append(place_dirs(lane))
        except BaseException as err:  # raised in the caller's thread below
            errors.append(err)

    threads = [threading.Thread(target=other, args=(lane,), name="relink") for lane in lanes[1:]]
    for thread in threads:
        thread.start()
    try:
        linked = place_dirs(lanes[0])
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return linked + sum(results)


class _Placer:
    """Files placed into one dir of the upper dir; its mtime is put back when done (the
    tar records it, and the writer gave it the value a full copy gives)."""

    def __init__(
        self, upper_fd: int, prev_fd: int, context_fd: int, parent: str, owner: tuple[int, int]
    ) -> None:
        self.dir = open_below(upper_fd, os.fsencode(parent), _DIR)
        self.old = -1
        if prev_fd >= 0:
            with contextlib.suppress(OSError):  # the previous layer has no such dir
                self.old = open_below(prev_fd, os.fsencode(parent), _DIR)
        self.context = context_fd
        self.owner = owner
        self.times = os.fstat(self.dir)

    def link(self, name: str, mode: int, size: int, mtime_ns: int) -> bool:
        """Link the previous layer's NAME here if it is the file a copy would write: its
        bytes (the recorded digest says so), size, mode, owner and mtime, and no xattrs.
        The link changes nothing of the shared inode but its link count."""
        if self.old < 0:
            return False
        try:
            old = os.lstat(name, dir_fd=self.old)
        except OSError:
            return False
        if not (
            old.st_mode == stat.S_IFREG | mode
            and old.st_size == size
            and (old.st_uid, old.st_gid) == self.owner
            and old.st_mtime_ns == mtime_ns
            and old.st_dev == self.times.st_dev
            and not os.listxattr(f"/proc/self/fd/{self.old}/{name}", follow_symlinks=False)
        ):
            return False
        try:
            os.link(name, name, src_dir_fd=self.old, dst_dir_fd=self.dir, follow_symlinks=False)
            return True
        except FileExistsError:  # an earlier item of this COPY wrote there: replace it
            pass
        except OSError:  # too many links, protected_hardlinks, ...: copy instead
            return False
        temp = f".{name}.{os.getpid()}.link"
        try:
            os.link(name, temp, src_dir_fd=self.old, dst_dir_fd=self.dir, follow_symlinks=False)
        except OSError:  # a name taken or too long: copy instead
            return False
        os.rename(temp, name, src_dir_fd=self.dir, dst_dir_fd=self.dir)
        return True

    def copy(self, name: str, mode: int, mtime_ns: int, source: str) -> None:
        """A new file NAME with the context's bytes of SOURCE and the metadata the COPY
        writer would have given it (it replaces what an earlier item wrote there)."""
        remove_non_dir(name, self.dir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=self.dir)
        try:
            src = open_below(self.context, os.fsencode(source), os.O_RDONLY)
            try:
                copy_bytes(src, dst)
            finally:
                os.close(src)
        except BaseException:
            os.close(dst)
            raise
        finish_file(dst, *self.owner, mode, mtime_ns)

    def close(self) -> None:
        try:
            os.utime(self.dir, ns=(self.times.st_atime_ns, self.times.st_mtime_ns))
        finally:
            os.close(self.dir)
            if self.old >= 0:
                os.close(self.old)


_DIR = os.O_RDONLY | os.O_DIRECTORY
