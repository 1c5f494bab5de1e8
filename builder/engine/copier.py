"""The COPY step's writer. It runs INSIDE the image's root: in a thread of ours whose root
is the image's (sandbox/inthread), else in the sandbox after pivot_root.

Running in the image's own root means every symlink the image holds resolves inside the
image, never on the host; the build context is read through a directory fd opened before
the root was entered, by relative paths, without following a final symlink.

Every writer takes `root`, the path at which it reaches the image: "/" in its root. An
executor without one (the tests') passes a plain directory instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec

from builder.engine.context import CopyItem
from builder.engine.extract import extract, open_archive
from builder.engine.state import ImageState
from builder.errors import SourceLocation, StepFailed
from builder.layer.tree import DirCursor, open_below
from builder.recipe.chmod import Chmod
from builder.record import dataclass
from builder.sandbox.users import read_groups, read_passwd


@dataclass(frozen=True)
class Ownership:
    """--chown (or WORKDIR's USER) as written, `user[:group]`, resolved against the image's
    /etc files the way BuildKit's file operations resolve it: "root" or a number is an id
    (a lone uid is the gid too); a user name the image does not know is 0:0 and a group
    name it does not know leaves the user's gid. Never an error: only RUN fails on an
    unknown user."""

    spec: str | None

    def check_base(self, state: ImageState, what: str, location: SourceLocation) -> None:
        """BuildKit looks a name up in the files of the step's input; a stage with no layer
        yet (FROM scratch) has no input, and the step fails (docker/buildx#1526)."""
        if state.layers or state.unresolved or not self.spec:  # (a probed step made none)
            return
        user, colon, group = self.spec.partition(":")
        if _numeric(user) is None or (colon and _numeric(group) is None):
            raise StepFailed(
                f"{what}: invalid user index: -1 (the stage has no files yet, so no"
                f" /etc/passwd or /etc/group to look {self.spec!r} up in)",
                1,
                location,
            )

    def resolve(self, root: str) -> tuple[int, int]:
        if not self.spec:
            return 0, 0
        user, colon, group = self.spec.partition(":")
        uid = gid = _numeric(user)
        if uid is None:
            users = read_passwd(in_image(root, "/etc/passwd"))
            entry = next((u for u in users if u.name == user), None)
            uid, gid = (entry.uid, entry.gid) if entry is not None else (0, 0)
        assert gid is not None
        if not colon:
            return uid, gid
        group_id = _numeric(group)
        if group_id is None:
            groups = read_groups(in_image(root, "/etc/group"))
            match = next((g for g in groups if g.name == group), None)
            group_id = match.gid if match is not None else gid
        return uid, group_id


def _numeric(name: str) -> int | None:
    """BuildKit's parseUID: "root" is 0, a decimal below 2**31 is itself, else a name."""
    if name == "root":
        return 0
    if name.isdigit() and int(name) < 2**31:
        return int(name)
    return None


def in_image(root: str, path: str) -> str:
    """PATH (absolute, as the image sees it) as a writer reaches it from ROOT."""
    return path if root == "/" else root.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class InlineFile:
    """A heredoc source: `COPY <<EOF /dest`."""

    content: bytes
    target: str
    mode: int = 0o644


def remove_non_dir(path: str | bytes, dir_fd: int | None = None) -> None:
    try:
        if not stat.S_ISDIR(os.lstat(path, dir_fd=dir_fd).st_mode):
            os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Dirs:
    """Directories reached by a relative path from a base dir fd one component at a time,
    made when missing (as `mkdir -p`): a path may be longer than PATH_MAX. The last
    one opened stays open, and the next is reached from it (tree.DirCursor), since entries
    come in tree order. Symlinks on the way are followed as the root we run in resolves
    them (in the image's root, inside the image).

    A directory made here gets MODE and OWNER: BuildKit's copy makes the parents it needs
    0755 (or the octal --chmod) and owned by --chown (root without one)."""

    def __init__(self, base_fd: int, mode: int = 0o755, owner: tuple[int, int] = (0, 0)) -> None:
        self.mode, self.owner = mode, owner
        self._cursor = DirCursor(base_fd, _DIR)
        self.rel = ""  # the last `rel` opened, as given (most calls repeat it)
        self._target: tuple[str, ...] = ()  # the parts being opened (for `made`)
        # The dirs made here, by their parts: empty when made, so what stands in one is
        # what this writer put there (the COPY writer's _defer need not look).
        self.made: set[tuple[str, ...]] = set()

    @property
    def fd(self) -> int:
        return self._cursor.fd  # of `parts`; -1: none open

    @property
    def parts(self) -> tuple[str, ...]:
        return self._cursor.parts  # type: ignore[return-value]  # str parts only here

    def open(self, rel: str, *, create: bool = True) -> int:
        """The fd of `rel` (valid until the next call or close())."""
        cursor = self._cursor
        if cursor.fd >= 0 and rel == self.rel:
            return cursor.fd
        split = rel.split("/")
        if "" in split or "." in split:
            split = [p for p in split if p and p != "."]
        parts = tuple(split)
        self.rel, self._target = "", parts
        fd = cursor.goto(parts, self._make if create else None)
        self.rel = rel
        return fd

    def _make(self, parent: int, name: str | bytes, depth: int) -> int:
        made = False
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
            made = True
        fd = os.open(name, _DIR, dir_fd=parent)
        if made:
            try:
                os.fchown(fd, *self.owner)
                os.fchmod(fd, self.mode)  # after chown, which clears setuid bits
            except BaseException:
                os.close(fd)
                raise
            self.made.add(self._target[: depth + 1])
        return fd

    def is_dir(self, rel: str) -> bool:
        try:
            self.open(rel, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def close(self) -> None:
        self._cursor.close()
        self.rel = ""


def _write_file(src_fd: int, dir_fd: int, name: str, mode: int) -> int:
    """A new file NAME in DIR_FD holding SRC_FD's bytes (none when SRC_FD is -1)."""
    remove_non_dir(name, dir_fd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    dst = os.open(name, flags, mode & 0o777, dir_fd=dir_fd)
    if src_fd >= 0:
        copy_bytes(src_fd, dst)
    return dst


def copy_bytes(src_fd: int, dst_fd: int) -> None:
    """All of SRC_FD's bytes (from its start) into the empty file DST_FD, in the kernel."""
    try:
        while os.sendfile(dst_fd, src_fd, None, 1 << 30) > 0:
            pass
    except OSError:
        os.lseek(src_fd, 0, os.SEEK_SET)
        os.ftruncate(dst_fd, 0)
        os.lseek(dst_fd, 0, os.SEEK_SET)
        while chunk := os.read(src_fd, 1 << 20):
            os.write(dst_fd, chunk)


def _defer(dirs: Dirs, name: str, parent: str, touched: set[str], aliased: bool) -> bool:
    """Leave NAME in the dir `dirs` has open (`parent`) for the host to write; False when
    it must be written here (a dir stands there: writing fails as it would have). Not
    looked up in a dir made by `dirs` unless it made a dir of that name, while no symlink
    of ours (`aliased`) may have made one by another path. The parent gets the mtime
    writing a file in it gives, which also copies it up into the upper dir, where the
    host needs it; once per parent (twice for a dir by two names: no matter, as two
    writes)."""
    dir_fd = dirs.fd
    if aliased or dirs.parts not in dirs.made or (*dirs.parts, name) in dirs.made:
        try:
            if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                return False
        except FileNotFoundError:
            pass
    if parent not in touched:
        os.utime(dir_fd)  # now
        touched.add(parent)
    return True


def finish_file(dst: int, uid: int, gid: int, mode: int, mtime_ns: int) -> None:
    """Owner, mode and mtime of a file just written, then close it."""
    try:
        os.fchown(dst, uid, gid)
        os.fchmod(dst, mode)  # after chown, which clears setuid bits
        os.utime(dst, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(dst)


P = ParamSpec("P")

# Where a writer's messages go: fd 2 in the sandbox (its stderr is the step's output); a
# writer run in a thread of ours (sandbox/inthread) is given the output's fd instead.
_messages = threading.local()


@contextlib.contextmanager
def messages_to(fd: int) -> Iterator[None]:
    """The writers' messages in this thread go to FD meanwhile."""
    _messages.fd = fd
    try:
        yield
    finally:
        del _messages.fd


def in_root(fn: Callable[P, int]) -> Callable[P, int]:
    """For code run inside the image's root: a user's mistake (a missing file or user, a
    bad archive) becomes one line on stderr (see messages_to) and status 1.

    os.write, not print: in a forked child, sys.stderr's lock may be held forever by a
    thread of the parent that was writing at the fork.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return fn(*args, **kwargs)
        except (LookupError, OSError, tarfile.TarError) as err:
            os.write(getattr(_messages, "fd", 2), f"{err}\n".encode(errors="replace"))
            return 1

    return wrapper


def _split(path: str) -> tuple[str, str]:
    """(parent, name) of a '/'-separated path below a root; the root itself is ("", "")."""
    parent, _, name = path.strip("/").rpartition("/")
    return parent, name


def final_target(root: str, path: str) -> str:
    """PATH with its last component followed while it is a symlink, as BuildKit resolves a
    COPY destination (fs.RootPath): a link to a missing file is written through. `..` stops
    at the root, so the result never leaves it."""
    for _ in range(40):
        try:
            link = os.readlink(in_image(root, path))
        except OSError:  # not a symlink, or missing
            return path
        path = posixpath.normpath(posixpath.join("/", posixpath.dirname(path), link))
    raise LookupError(f"{path}: too many levels of symbolic links")


class Written:
    """Where each regular file of the context landed: its real path in the image (every
    symlink on the way resolved, no leading '/') -> (the item's index, its mode, and
    whether its bytes were left for the host to place: `deferred`). A later write of
    anything else at the same path takes it out. Paths through a symlink that leaves `root`
    (only possible outside the sandbox, in the tests' executor) are not tracked."""

    def __init__(self, root: str) -> None:
        self._root = os.path.realpath(root).rstrip("/") + "/"
        self._real: dict[str, str | None] = {}  # a parent as written -> its real path
        self.files: dict[str, tuple[int, int, bool]] = {}
        self.owner = (0, 0)

    def path(self, parent: str, name: str) -> str | None:
        if parent in self._real:
            real = self._real[parent]
        else:
            full = os.path.realpath(in_image(self._root, "/" + parent)).rstrip("/") + "/"
            real = full[len(self._root) :] if full.startswith(self._root) else None
            self._real[parent] = real
        return None if real is None else real + name

    def other(self, parent: str, name: str) -> None:
        """Something that is not a tracked file was written at parent/name."""
        path = self.path(parent, name)
        self.files.pop(path or "", None)
        self._real.clear()  # (a symlink may now stand where a parent was looked up)

    def report(self, fd: int) -> None:
        """The record the host reads back (read_report)."""
        head = b"%d %d\0" % self.owner
        data = head + b"".join(
            b"%d %d %d\0%s\0" % (index, mode, deferred, os.fsencode(path))
            for path, (index, mode, deferred) in self.files.items()
        )
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class Report:
    """What the COPY writer says it did (Written.report), as the host reads it."""

    owner: tuple[int, int]  # every file's uid and gid
    files: dict[str, tuple[int, int, bool]]  # real path -> (item index, mode, deferred)


def read_report(fd: int) -> Report:
    """What `Written.report` wrote into the file `fd`, from its start."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    fields = b"".join(chunks).split(b"\0")
    if len(fields) < 2:
        return Report((0, 0), {})  # (the writer failed before its report)
    uid, gid = map(int, fields[0].split())
    files = {}
    for i in range(1, len(fields) - 1, 2):
        index, mode, deferred = map(int, fields[i].split())
        files[os.fsdecode(fields[i + 1])] = (index, mode, bool(deferred))
    return Report((uid, gid), files)


@in_root
def copy_into_root(
    root: str,
    context_fd: int,
    items: list[CopyItem],
    inline: list[InlineFile],
    owner: Ownership,
    chmod: Chmod | None,
    unpack_archives: bool = False,
    deferred: frozenset[int] = frozenset(),
    report_fd: int = -1,
) -> int:
    """Write the context items (and heredoc files) into the root we are in.

    Every path is reached one component at a time from an fd (Dirs; open_below for the
    context): a context or a destination may be deeper than PATH_MAX allows to name.

    The files of the items whose indexes are in `deferred` (the previous version of the
    layer may hold them already) are left to the host, which links the previous layer's
    copy or writes one (engine/relink): here their destination is only resolved, and
    their parent dir made and marked changed, as writing a file there would. With
    `report_fd`, where each file landed is written there (Written.report).
    """
    uid, gid = owner.resolve(root)
    root_fd = os.open(root, _DIR)
    dirs = Dirs(root_fd, chmod.created_dir_mode if chmod else 0o755, (uid, gid))
    written = Written(root)
    written.owner = (uid, gid)
    try:
        # ADD --chown owns what it unpacks; without one, the archive's own ids stay.
        archive_owner = (uid, gid) if owner.spec else None
        _copy_items(root, dirs, context_fd, items, owner=(uid, gid), chmod=chmod,
                    unpack_archives=unpack_archives, archive_owner=archive_owner,
                    deferred=deferred, written=written)  # fmt: skip
        for file in inline:
            parent, name = _split(final_target(root, file.target))
            pfd = dirs.open(parent)
            written.other(parent, name)
            remove_non_dir(name, pfd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o644, dir_fd=pfd)
            try:
                os.write(fd, file.content)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, chmod.apply(file.mode, False) if chmod else file.mode)
            finally:
                os.close(fd)
        if report_fd >= 0:
            written.report(report_fd)
    finally:
        dirs.close()
        os.close(root_fd)
    return 0


def _copy_items(
    root: str,
    dirs: Dirs,
    context_fd: int,
    items: list[CopyItem],
    *,
    owner: tuple[int, int],
    chmod: Chmod | None,
    unpack_archives: bool,
    archive_owner: tuple[int, int] | None,
    deferred: frozenset[int],
    written: Written,
) -> None:
    uid, gid = owner
    dir_times: list[tuple[str, int]] = []
    touched: set[str] = set()  # the parents _defer marked
    aliased = False  # whether a symlink was written (a dir may now have two paths)
    for index, item in enumerate(items):
        entry = item.entry
        target = final_target(root, item.target) if item.source else item.target
        # ADD unpacks a tar into DEST, or beside the name it would have had as a file.
        archive_dir = target
        if not item.into_existing_dir and unpack_archives:
            archive_dir = posixpath.dirname(target)
        if item.into_existing_dir and dirs.is_dir(target):
            target = posixpath.join(target, item.name or posixpath.basename(entry.path))
        parent, name = _split(target)
        mode = chmod.apply(entry.mode, entry.kind == "dir") if chmod else entry.mode
        if entry.kind == "dir":
            if item.source:
                # The destination of a directory's contents: made like a parent (0755 or
                # the octal --chmod, --chown's owner); one that exists keeps its own.
                dirs.open(target.strip("/"))
                continue
            if dirs.is_dir(target):  # one the image has keeps its owner and mode (BuildKit)
                continue
            fd = dirs.open(target.strip("/"))
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown, which clears setuid bits
            dir_times.append((target, entry.mtime_ns))
            continue
        pfd = dirs.open(parent)
        if entry.kind == "symlink":
            aliased = True
            written.other(parent, name)
            remove_non_dir(name, pfd)
            os.symlink(entry.digest, name, dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            times = (entry.mtime_ns, entry.mtime_ns)
            os.utime(name, ns=times, dir_fd=pfd, follow_symlinks=False)
            continue
        path = written.path(parent, name)
        if index in deferred and path is not None and _defer(dirs, name, parent, touched, aliased):
            written.files[path] = (index, mode, True)
            continue
        src = open_below(context_fd, os.fsencode(entry.path), os.O_RDONLY)
        try:
            # Only a source that is itself an archive is unpacked, never one found inside
            # a directory being copied (BuildKit tries each matched source, not its files).
            archive = open_archive(src) if unpack_archives and item.source else None
            if archive is not None:
                dirs.open(archive_dir.strip("/"))
                extract(archive, in_image(root, archive_dir), archive_owner)
                written.files.clear()  # an archive may have written over any of them
                continue
            dst = _write_file(src, pfd, name, mode)
        finally:
            os.close(src)
        if path is not None:
            written.files[path] = (index, mode, False)
        finish_file(dst, uid, gid, mode, entry.mtime_ns)
    for path, mtime_ns in reversed(dir_times):  # children first changed their parents' mtimes
        os.utime(dirs.open(path.strip("/")), ns=(mtime_ns, mtime_ns))
