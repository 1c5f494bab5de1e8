"""The copying snapshotter: a root made by copying the layers, and its changes turned back
into an upper dir in overlay form, so that the one layer writer makes the same bytes.

Where overlayfs cannot be mounted, a RUN (or `builder run`) gets a plain directory: the
lower layers (overlay form: char 0/0 whiteouts, opaque xattrs) applied bottom-first into
it, each file copied (a reflink where the file system has them; never a hard link to the
store's layer, which a RUN could then change in place). Hard links within a layer are kept,
as the merged view of overlayfs shows them (one inode, its link count). Where the two
differ: a RUN that writes in place to one name of such a pair changes both here, and both
land in the layer; overlayfs (without `index=on`) breaks the pair at copy-up and records
only the name written to.

Before the process runs, every entry's inode number and ctime are recorded and every
directory is held open, so that its inode number cannot be reused. Afterwards an entry is
changed if it is new, or its inode or ctime differs (any write, chmod, chown, link or xattr
change moves ctime); the upper dir then gets what overlayfs would have put there: each
changed entry (moved out of the copy, hard links among them kept), its parent dirs with
their metadata (copied up, as overlayfs does; prune drops the unchanged ones), a whiteout
for each removed entry whose dir is still the same one, and the opaque xattr on a dir made
where one (or any entry) was before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from builder.layer import whiteout as wh
from builder.layer.tree import remove_tree
from builder.layer.xattrs import read_xattrs

_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (btrfs, xfs, ...)
_CHUNK = 1 << 30
_FD_MARGIN = 256  # fds left free for the run itself (pipes, the sandbox's own)


class _Was(NamedTuple):
    ino: int
    ctime_ns: int
    is_dir: bool


@contextlib.contextmanager
def snapshotted(
    snapshotter: str, lowers: Sequence[Path], upper: Path, work: Path
) -> Iterator[Path | None]:
    """Where a root's work runs, by snapshotter (sandbox/snapshotter.py's names): None, an
    overlay mounted on the layers as they are (overlayfs; fuse-overlayfs, whose upper dir is
    put in overlayfs's form once the work is done); or ("native") the path of a copy of the
    lowers whose changes land in `upper` once the work is done. The build's RUN steps and
    `builder run` both come here, so the three give the same layers."""
    if snapshotter == "overlayfs":
        yield None
    elif snapshotter == "fuse-overlayfs":
        from builder.layer import fuse_upper

        yield None
        fuse_upper.normalize(upper, lowers)
    else:
        with copied_root(lowers, upper, work) as path:
            yield path


@contextlib.contextmanager
def copied_root(lowers: Sequence[Path], upper: Path, work: Path) -> Iterator[Path]:
    """A plain dir holding `lowers` (bottom-first) applied in order, for the work to change;
    once the body ends without an exception, its changes are in `upper` in overlay form.
    The dir (under `work`) is removed either way."""
    root = work / "merged"
    os.mkdir(root, 0o755)
    pins: list[int] = []
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        _materialize(lowers, root)
        before = _record(root, pins)
        yield root
        _diff(root, before, upper)
    finally:
        for fd in pins:
            os.close(fd)
        if resource.getrlimit(resource.RLIMIT_NOFILE) != limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        remove_tree(root, ignore_errors=True)


# ---- the copy ----------------------------------------------------------------------------


def _materialize(lowers: Sequence[Path], root: Path) -> None:
    if not lowers:  # scratch: what docker gives an image's `/`
        os.chown(root, 0, 0)
        os.chmod(root, 0o755)
    for layer in lowers:
        _apply(str(layer), str(root), {})
        st = os.lstat(layer)
        _set_meta(str(root), st, read_xattrs(str(layer)))


def _apply(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    """One overlay-form layer dir onto the dir below it; `links` maps the layer's inodes
    already copied to their copy (hard links stay links)."""
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        target = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        xattrs = read_xattrs(entry.path)
        if wh.is_overlay_whiteout(st, xattrs):
            _remove(target)
            continue
        if stat.S_ISDIR(st.st_mode):
            old = _lstat(target)
            if old is not None and (not stat.S_ISDIR(old.st_mode) or wh.is_overlay_opaque(xattrs)):
                _remove(target)
                old = None
            if old is None:
                os.mkdir(target, 0o700)
            _apply(entry.path, target, links)
        else:
            _remove(target)
            first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                os.link(first, target)
                continue
            if not _copy_node(entry.path, st, target):
                continue
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = target
        _set_meta(target, st, xattrs)


def _copy_node(src: str, st: os.stat_result, dst: str) -> bool:
    """A non-dir at `dst` like `src`; False when this user may not make it (a device)."""
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        _copy_file(src, dst)
    elif kind == stat.S_IFLNK:
        os.symlink(os.readlink(src), dst)
    elif kind == stat.S_IFIFO:
        os.mkfifo(dst, 0o600)
    else:
        try:
            os.mknod(dst, kind | 0o600, st.st_rdev)
        except PermissionError:  # a device without CAP_MKNOD: the sandbox's /dev is its own
            return False
    return True


def _copy_file(src: str, dst: str) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except OSError:
            pass
        try:
            while os.copy_file_range(fin.fileno(), fout.fileno(), _CHUNK):
                pass
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout)


def _set_meta(path: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
    """Owner, then xattrs (a chown drops security.capability), then mode (a chown drops
    setuid bits), then times (every earlier step may move them)."""
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    for name, value in xattrs.items():
        if not wh.is_overlay_xattr(name):
            os.setxattr(path, name, value, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        os.unlink(path)


# ---- before and after --------------------------------------------------------------------


def _entries(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below `root` as (relative path, lstat), parents before children."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in sorted(it, key=lambda e: e.name, reverse=True):
                child = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)


def _record(root: Path, pins: list[int]) -> dict[str, _Was]:
    """Each entry's identity, every dir held open (its inode number stays unique). Only an
    image with more dirs than the soft fd limit allows raises it (toward the hard one), for
    the run: its processes inherit that limit."""
    before: dict[str, _Was] = {}
    for rel, st in [("", os.lstat(root)), *_entries(str(root))]:
        is_dir = stat.S_ISDIR(st.st_mode)
        before[rel] = _Was(st.st_ino, st.st_ctime_ns, is_dir)
        if is_dir:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if len(pins) + _FD_MARGIN >= soft and soft < hard:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, soft * 2), hard))
            pins.append(os.open(root / rel, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    return before


def _diff(root: Path, before: dict[str, _Was], upper: Path) -> None:
    now: dict[str, os.stat_result] = {}
    made: set[str] = {""}  # dirs in the upper dir whose metadata comes from the copy
    opaque: set[str] = set()
    for rel, st in _entries(str(root)):
        now[rel] = st
        was = before.get(rel)
        if was is not None and (was.ino, was.ctime_ns) == (st.st_ino, st.st_ctime_ns):
            continue
        _make_parents(upper, rel, made)
        if stat.S_ISDIR(st.st_mode):
            if rel not in made:
                os.mkdir(upper / rel, 0o700)
                made.add(rel)
            if was is not None and (not was.is_dir or was.ino != st.st_ino):
                opaque.add(rel)  # made where something was: it hides all below it
        else:
            os.rename(root / rel, upper / rel)  # keeps the inode: hard links stay linked
    for rel in before:
        if rel in now or not rel:
            continue
        parent = os.path.dirname(rel)
        there = now.get(parent) if parent else os.lstat(root)
        if there is None or before[parent].ino != there.st_ino or parent in opaque:
            continue  # its dir went (or was replaced) too: that is the change to record
        if not stat.S_ISDIR(there.st_mode):
            continue
        _make_parents(upper, rel, made)
        wh.write_whiteout(upper / rel)
    for rel in sorted(made, key=lambda r: -r.count("/") if r else 1):  # children first
        st = now[rel] if rel else os.lstat(root)
        _set_meta(str(upper / rel) if rel else str(upper), st, read_xattrs(str(root / rel)))
        if rel in opaque:
            wh.write_opaque(upper / rel)


def _make_parents(upper: Path, rel: str, made: set[str]) -> None:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = "/".join(parts[:i])
        if parent not in made:
            os.mkdir(upper / parent, 0o700)
            made.add(parent)
