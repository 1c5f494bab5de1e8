"""Walking and removing directory trees of any depth, with a bounded number of open fds.

A RUN can make a tree thousands of levels deep: its paths exceed PATH_MAX, so no walk may
name an entry by its full path, and recursion (os.walk, shutil.rmtree, tarfile.add in
Python 3.11) exceeds the interpreter's stack. Every walk of a tree we did not make goes
through here: an explicit stack of sibling lists and ONE open directory fd, entries reached
by name relative to it. Going up opens `..` and checks that it is the directory we came
from (device and inode), so a tree moved while it is walked raises instead of leading the
walk elsewhere.
"""

from __future__ import annotations

import bisect
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from builder.record import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class Visit:
    """One entry of a walk. `dir_fd` is the directory holding it, open until the walk moves
    on: reach the entry as `name` relative to it, never by `path`."""

    dir_fd: int
    name: bytes
    path: bytes  # from the walk's top, '/'-separated; may be longer than PATH_MAX
    st: os.stat_result  # lstat
    depth: int  # 0 for the top's own children
    after: bool = False  # a directory seen again after its children (post_order walks)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def proc_path(self) -> bytes:
        """A short path naming the entry itself (for calls without a dir_fd form, such as
        the xattr ones; the final component is not followed by their l-variants)."""
        return b"/proc/self/fd/%d/%s" % (self.dir_fd, self.name)


# The lstat of a regular file not made yet (`visit.st is UNSTATTED`): one of a Run.
UNSTATTED = os.stat_result((stat.S_IFREG, 0, 0, 0, 0, 0, 0, 0, 0, 0))


@dataclass(slots=True)
class Run:
    """Siblings that their directory lists as regular files (its d_type), in walk order,
    not lstat'ed (walk_runs): the layer writer makes them in a batch. `dir_fd` is open
    until the walk moves on, as a Visit's."""

    dir_fd: int
    prefix: bytes  # the path of their dir from the walk's top, '/'-ended (b"" at the top)
    names: list[bytes]
    depth: int


# A dir's entries still to visit, reversed: pop() gives the next. A name is visited (and
# lstat'ed); a list is a Run's names.
_Items = list[bytes | list[bytes]]


@dataclass(slots=True)
class _Frame:
    prefix: bytes  # path of this dir + b"/" (b"" for the top)
    items: _Items
    ident: tuple[int, int]  # (st_dev, st_ino) of this dir
    visit: Visit | None  # how its parent saw it (None for the top)


def _listing(fd: int, longest: int) -> _Items:
    """The names in `fd`, sorted, reversed; with `longest`, the runs of names the dir says
    are regular files (at most `longest` each) as lists: one sort and one bisection per
    entry of another kind, no Python step per file."""
    if not longest:
        # listdir(fd) gives str names, surrogate-escaped: fsencode gives back the exact bytes.
        names: list[bytes] = [os.fsencode(name) for name in os.listdir(fd)]
        names.sort(reverse=True)
        return names  # type: ignore[return-value]  # (a list of names is _Items)
    try:  # a bytes path gives bytes names (no fsencode per name); /proc names the dir
        entries = os.scandir(b"/proc/self/fd/%d" % fd)
    except OSError:  # no /proc (or not ours): the fd itself, and str names
        with os.scandir(fd) as listed:
            pairs = [(os.fsencode(e.name), e.is_file(follow_symlinks=False)) for e in listed]
        names = sorted(name for name, _ in pairs)
        others = sorted(name for name, is_file in pairs if not is_file)
    else:
        with entries:
            listed_b = list(entries)
        names = [e.name for e in listed_b]
        names.sort()
        others = [e.name for e in listed_b if not e.is_file(follow_symlinks=False)]
        others.sort()
    items: _Items = []
    start = 0
    for other in [*others, None]:
        end = len(names) if other is None else bisect.bisect_left(names, other, start)
        while start < end:
            items.append(names[start : min(end, start + longest)])
            start += longest
        if other is not None:
            items.append(other)
            start = end + 1
    items.reverse()
    return items


def _changed(path: bytes) -> OSError:
    return OSError(errno.ESTALE, "the tree changed while it was walked", os.fsdecode(path))


def _descend(fd: int, name: str | bytes, st: os.stat_result, path: bytes) -> int | None:
    """The subdirectory `name` of `fd`, lstat'ed as `st`, opened; `fd` closed. None (and
    `fd` still open) when it was removed or replaced by a non-dir since. What opened must
    be what was lstat'ed: a dir swapped in between would take the walk elsewhere."""
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    child_st = os.fstat(child)
    if (child_st.st_dev, child_st.st_ino) != (st.st_dev, st.st_ino):
        os.close(child)
        raise _changed(path)
    os.close(fd)
    return child


def _ascend(fd: int, ident: tuple[int, int], path: bytes) -> int:
    """`fd`'s parent opened through `..`, which must be the dir (dev, ino) `ident` the walk
    came down from (else the dir at `path` was moved meanwhile); `fd` closed."""
    parent = os.open(b"..", _DIR_FLAGS, dir_fd=fd)
    parent_st = os.fstat(parent)
    if (parent_st.st_dev, parent_st.st_ino) != ident:
        os.close(parent)
        raise _changed(path)
    os.close(fd)
    return parent


def open_dir(top: str | bytes | Path) -> int:
    return os.open(top, _DIR_FLAGS)


def walk(
    top: str | bytes | Path | int,
    *,
    post_order: bool = False,
    one_filesystem: bool = False,
) -> Iterator[Visit]:
    """Every entry below `top` (a path or a directory fd, which stays the caller's),
    depth-first with siblings in byte order, parents before children; with `post_order`
    each directory is visited again (`after=True`) once its children are done.

    With `one_filesystem`, directories on another device (mount points) are visited but
    not entered. An entry removed while the walk runs is skipped.
    """
    return _walk(top, post_order, one_filesystem, 0)  # type: ignore[return-value]  # no Run


def walk_runs(top: str | bytes | Path | int, longest: int) -> Iterator[Visit | Run]:
    """walk()'s entries, but those the directory lists as regular files come as Runs of at
    most `longest` names, not lstat'ed: the caller lstats them when (and where) it needs
    to (and finds them gone, or changed)."""
    return _walk(top, False, False, longest)


def _walk(
    top: str | bytes | Path | int, post_order: bool, one_filesystem: bool, longest: int
) -> Iterator[Visit | Run]:
    fd = os.dup(top) if isinstance(top, int) else open_dir(top)
    lstat, is_dir = os.lstat, stat.S_ISDIR  # locals: this loop runs once per entry
    try:
        top_st = os.fstat(fd)
        frames = [_Frame(b"", _listing(fd, longest), (top_st.st_dev, top_st.st_ino), None)]
        while frames:
            frame = frames[-1]
            items, prefix, depth = frame.items, frame.prefix, len(frames) - 1
            while items:
                name = items.pop()
                if name.__class__ is list:
                    yield Run(fd, prefix, name, depth)
                    continue
                assert isinstance(name, bytes)
                try:
                    st = lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                visit = Visit(fd, name, prefix + name, st, depth)
                yield visit
                if not is_dir(st.st_mode):
                    continue
                if one_filesystem and st.st_dev != top_st.st_dev:
                    continue
                child = _descend(fd, name, st, visit.path)
                if child is None:
                    continue  # removed or replaced (by the caller, or meanwhile)
                fd = child
                frames.append(
                    _Frame(visit.path + b"/", _listing(fd, longest), (st.st_dev, st.st_ino), visit)
                )
                break
            else:  # this dir is done: back up to its parent
                frames.pop()
                if not frames:
                    break
                fd = _ascend(fd, frames[-1].ident, frame.prefix)
                if post_order and frame.visit is not None:
                    done = frame.visit
                    yield Visit(fd, done.name, done.path, done.st, done.depth, after=True)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _ListedFrame:
    prefix: str
    dirs: list[os.DirEntry[str]]  # its subdirectories still to enter, reversed
    ident: tuple[int, int]


def walk_listings(top: str | bytes | Path) -> Iterator[tuple[int, str, list[os.DirEntry[str]]]]:
    """Every directory of the tree, `top` first, parents before children: its open fd, its
    path from `top` ('/'-ended, "" for the top) and its entries as os.scandir(fd) lists them.

    For a caller that wants every entry's lstat with few Python steps: names are str as
    os.fsdecode gives them (undecodable bytes surrogate-escaped), an entry's
    `stat(follow_symlinks=False)` is an fstatat on the fd (cached by the entry), and the
    fd is open until the caller asks for the next directory: stat them before. Entries are in the
    directory's own order. Directories are entered as walk() enters them: one fd open, by
    name, each checked against its lstat, `..` checked on the way up.
    """
    fd = open_dir(top)
    try:
        top_st = os.fstat(fd)
        with os.scandir(fd) as listed:
            listing = list(listed)
        yield fd, "", listing
        frames = [_ListedFrame("", _subdirs(listing), (top_st.st_dev, top_st.st_ino))]
        while frames:
            frame = frames[-1]
            if frame.dirs:
                entry = frame.dirs.pop()
                prefix = f"{frame.prefix}{entry.name}/"
                try:  # not entry.stat(): its fd number may be closed (and reused) by now
                    st = os.lstat(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # removed meanwhile
                child = _descend(fd, entry.name, st, os.fsencode(prefix))
                if child is None:
                    continue  # removed or replaced meanwhile
                fd = child
                with os.scandir(fd) as listed:
                    listing = list(listed)
                yield fd, prefix, listing
                frames.append(_ListedFrame(prefix, _subdirs(listing), (st.st_dev, st.st_ino)))
                continue
            frames.pop()  # this dir is done: back up to its parent
            if not frames:
                break
            fd = _ascend(fd, frames[-1].ident, os.fsencode(frame.prefix))
    finally:
        os.close(fd)


def _subdirs(listing: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    dirs = [entry for entry in listing if entry.is_dir(follow_symlinks=False)]
    dirs.reverse()
    return dirs


def remove_tree(top: str | bytes | Path, *, ignore_errors: bool = False) -> None:
    """`rm -rf top` for a tree of any depth. Mount points below are not entered (their
    removal then fails, and so does their parents'): a leaked mount is never emptied."""
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    except OSError:
        if ignore_errors:
            return
        raise
    try:
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(top)
            return
        for visit in walk(top, post_order=True, one_filesystem=True):
            try:
                if visit.after:
                    os.rmdir(visit.name, dir_fd=visit.dir_fd)
                elif not visit.is_dir:
                    os.unlink(visit.name, dir_fd=visit.dir_fd)
            except FileNotFoundError:
                pass
            except OSError:
                if not ignore_errors:
                    raise
        os.rmdir(top)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise


def remove_entry(dir_fd: int, name: str | bytes) -> None:
    """Remove `name` in the directory `dir_fd`, a tree or not (shutil.rmtree's dir_fd form,
    without its recursion)."""
    st = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for visit in walk(child, post_order=True, one_filesystem=True):
            if visit.after:
                os.rmdir(visit.name, dir_fd=visit.dir_fd)
            elif not visit.is_dir:
                os.unlink(visit.name, dir_fd=visit.dir_fd)
    finally:
        os.close(child)
    os.rmdir(name, dir_fd=dir_fd)


def tree_size(top: str | bytes | Path) -> int:
    """Bytes of every entry's lstat size, the top's included (0 if it is gone)."""
    try:
        st = os.lstat(top)
    except OSError:
        return 0
    total = st.st_size
    if not stat.S_ISDIR(st.st_mode):
        return total
    try:
        for visit in walk(top, one_filesystem=True):
            total += visit.st.st_size
    except OSError:
        pass
    return total


class DirCursor:
    """One open fd that moves between the dirs below `base` named by their components, as
    a tree-ordered series of lookups asks (a copy's parents, prune's view of a lower dir):
    each lookup starts from the dir the last one reached, going up through `..` checked by
    identity (device and inode, as the walk's ascent) and then down, not from `base` every
    time; from `base` again only when that is no longer (a symlink was followed on the way
    down, the tree was moved) or is not shorter. Reopening from `base` made a dir chain N
    deep cost N²/2 opens (2,500 levels: 3 million, half a minute).

    `flags` open every component (`_DIR_FLAGS` follow no symlink). `missing(fd, name,
    depth)`, when given, is called for a component that does not exist (FileNotFoundError):
    it returns an open fd of the dir it made there (or raises)."""

    def __init__(self, base: int, flags: int = _DIR_FLAGS) -> None:
        self.base, self.flags = base, flags
        self.parts: tuple[str | bytes, ...] = ()
        self.fd = -1  # of `parts`; -1: none open (then `parts` is ())
        # The (dev, ino) of each dir of `parts`: what `..` must give on the way up.
        self._idents: list[tuple[int, int]] = []

    def goto(
        self,
        parts: tuple[str, ...] | tuple[bytes, ...],
        missing: Callable[[int, str | bytes, int], int] | None = None,
    ) -> int:
        """The fd of the dir `parts` below base (this cursor's: valid until the next goto()
        or close()); base's own dup for ()."""
        if self.fd >= 0 and parts == self.parts:
            return self.fd
        fd, depth = self._toward(parts)
        idents = self._idents[:depth]
        try:
            for name in parts[depth:]:
                try:
                    nxt = os.open(name, self.flags, dir_fd=fd)
                except FileNotFoundError:
                    if missing is None:
                        raise
                    nxt = missing(fd, name, depth)
                try:
                    st = os.fstat(nxt)
                except BaseException:
                    os.close(nxt)
                    raise
                idents.append((st.st_dev, st.st_ino))
                depth += 1
                if fd != self.base:
                    os.close(fd)
                fd = nxt
        except BaseException:
            # It stays where it got: a lookup of a dir not made yet is followed by its
            # making, which then starts there.
            if fd != self.base:
                self.parts, self.fd, self._idents = parts[:depth], fd, idents
            raise
        if fd == self.base:
            fd = os.dup(self.base)  # a fd of our own, closed like the others
        self.parts, self.fd, self._idents = parts, fd, idents
        return fd

    def _toward(self, parts: tuple[str | bytes, ...]) -> tuple[int, int]:
        """An fd of parts[:depth] and that depth: the cursor's dir or an ancestor of it
        shared with `parts`, else base (depth 0). The cursor's own fd is handed over (closed
        or returned)."""
        fd, here = self.fd, self.parts
        self.fd, self.parts = -1, ()
        if fd < 0:
            return self.base, 0
        common = len(here)
        if parts[:common] != here:  # (in C: paths thousands deep are compared often)
            common = 0
            for mine, theirs in zip(here, parts, strict=False):
                if mine != theirs:
                    break
                common += 1
        up = len(here) - common
        if up == 0:
            return fd, common
        if up >= common:  # no fewer opens than from base
            os.close(fd)
            return self.base, 0
        try:
            for depth in range(len(here) - 1, common - 1, -1):
                parent = os.open(b"..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != self._idents[depth - 1]:
                    break
            else:
                return fd, common
        except OSError:
            pass
        os.close(fd)
        return self.base, 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.parts, self.fd = (), -1


def open_below(root_fd: int, path: bytes, flags: int = _DIR_FLAGS) -> int:
    """Open `path` (relative, '/'-separated, any length) below `root_fd` one component at a
    time, following no symlink: ENOENT/ENOTDIR/ELOOP as open(2) gives them."""
    parts = [p for p in path.split(b"/") if p and p != b"."]
    if not parts:
        return os.open(b".", flags | os.O_CLOEXEC, dir_fd=root_fd)
    fd = root_fd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)
