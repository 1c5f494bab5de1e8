"""ADD's archive rule: a local tar (plain, gzip, bzip2, xz or zstd) is unpacked, not copied.

Runs inside the sandbox, in the image's root. The rules are BuildKit's, which unpacks with
moby's chrootarchive.Untar (archive.Unpack chrooted into the destination):
- a member's name is relative to the destination: `/etc/pwned` lands at DEST/etc/pwned;
  after cleaning (`/../x` is `/x`), a name that climbs above DEST (`../x`, `a/../../x`) is
  refused: `"../x" is outside of "/a"`;
- every path is resolved inside DEST, as in moby's chroot: a symlink on the way, the
  image's or one the archive made (`lib -> /usr/lib`), resolves with DEST as its root
  (openat2 RESOLVE_IN_ROOT), never above it;
- symlinks are written as they are, absolute ones too (every distribution rootfs holds
  them); a relative target that climbs above DEST is refused, as moby refuses it;
- a hard link's target is a path inside DEST, by the same rule as names.
Modes, numeric owners and times are kept as the archive has them.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from types import TracebackType
from typing import IO

from builder.layer.compression import sniff_format
from builder.layer.tree import remove_entry


def preload() -> None:
    """Import what extraction may need, BEFORE entering the sandbox: inside the image's
    root there is no Python library to import from (tarfile loads its decompressors
    lazily, and an ImportError there reads as "not an archive")."""
    import bz2  # noqa: F401
    import gzip  # noqa: F401
    import lzma  # noqa: F401

    import zstandard  # noqa: F401

    # The in-root resolver and its libc handle and syscall number, loaded by a first call.
    from builder.sandbox.inroot import open_path

    _warm(open_path)


def _warm(open_path: Callable[[int, str, int], int]) -> None:
    root = os.open("/", _DIR)
    try:
        os.close(open_path(root, ".", _DIR))
    finally:
        os.close(root)


class _Archive(tarfile.TarFile):
    """A TarFile that closes the stream it reads too (tarfile leaves a given one open)."""

    source: IO[bytes] | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.source is not None:
                self.source.close()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(kind, error, trace)  # on an error, it skips close()
        finally:
            if self.source is not None:
                self.source.close()


def _is_tar_header(block: bytes) -> bool:
    return len(block) >= 263 and block[257:262] == b"ustar"


def open_archive(fd: int) -> tarfile.TarFile | None:
    """The tar in the file at `fd` (read from its start), or None if it is not one."""
    head = os.pread(fd, 512, 0)
    stream: IO[bytes] = os.fdopen(os.dup(fd), "rb")
    compression = sniff_format(head)
    if compression == "zstd":
        import zstandard

        # Every frame: zstd -T / pzstd write several, and layers are runs of frames.
        reader = zstandard.ZstdDecompressor().stream_reader(
            stream, closefd=True, read_across_frames=True
        )
        buffered = io.BufferedReader(reader)
        if not _is_tar_header(buffered.peek(512)[:512]):
            buffered.close()
            return None
        tar = _Archive.open(fileobj=buffered, mode="r|")
        tar.source = buffered
        return tar
    if compression is not None or _is_tar_header(head):
        try:
            tar = _Archive.open(fileobj=stream, mode="r:*")
        except tarfile.TarError:
            stream.close()
            return None
        tar.source = stream
        return tar
    stream.close()
    return None


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _inside(name: str, dest: str) -> str:
    """A member name as a clean path relative to DEST ("" for DEST itself); LookupError if
    it climbs above DEST. Absolute names are relative to DEST, as in a chroot."""
    clean = posixpath.normpath(name or ".").lstrip("/") or "."
    if clean == ".." or clean.startswith("../"):
        raise LookupError(f"{name!r} is outside of {dest!r}")
    return "" if clean == "." else clean


class _Unpacker:
    def __init__(self, dest_fd: int, dest: str, owner: tuple[int, int] | None) -> None:
        from builder.sandbox.inroot import open_path  # preloaded (see preload())

        self.owner = owner  # ADD --chown: every member's owner; None keeps the archive's
        self._open_path = open_path
        self.dest_fd = dest_fd
        self.dest = dest
        self.parent: tuple[str, int] = ("", -1)  # the last parent dir resolved, kept open
        self.dir_times: list[tuple[str, float]] = []

    def close(self) -> None:
        if self.parent[1] >= 0:
            os.close(self.parent[1])
        self.parent = ("", -1)

    def resolve(self, rel: str, *, create: bool) -> int:
        """An fd of the directory `rel` resolved inside DEST (made, 0755, when missing)."""
        try:
            return self._open_path(self.dest_fd, rel, _DIR)
        except FileNotFoundError:
            if not create:
                raise
        parts = rel.split("/")
        fd = os.dup(self.dest_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nxt = self._open_path(self.dest_fd, "/".join(parts[: i + 1]), _DIR)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        where = "/".join(parts[: i + 1])
                        raise LookupError(
                            f"{rel!r}: {where!r} is a symlink to a missing directory"
                        ) from None
                    nxt = self._open_path(self.dest_fd, "/".join(parts[: i + 1]), _DIR)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def parent_of(self, rel: str) -> tuple[int, str]:
        parent, _, base = rel.rpartition("/")
        if self.parent[1] < 0 or self.parent[0] != parent:
            fd = self.resolve(parent, create=True) if parent else os.dup(self.dest_fd)
            self.close()
            self.parent = (parent, fd)
        return self.parent[1], base

    def ids(self, member: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (member.uid, member.gid)

    def member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = _inside(member.name, self.dest)
        if not rel:
            return  # DEST itself ("./"): its own metadata stays as the image has it
        pfd, base = self.parent_of(rel)
        try:
            existing: os.stat_result | None = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            remove_entry(pfd, base)  # later duplicates win, as in tar and moby
        mode = member.mode & 0o7777
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _DIR | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                os.fchown(fd, *self.ids(member))
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            self.dir_times.append((rel, member.mtime))
            return
        if member.isreg():
            fd = os.open(base, _NEW_FILE, 0o600, dir_fd=pfd)
            try:
                source = tar.extractfile(member)
                if source is not None:
                    with os.fdopen(os.dup(fd), "wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                os.fchown(fd, *self.ids(member))
                os.fchmod(fd, mode)  # after chown, which clears setuid bits
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)
            return
        if member.issym():
            target = member.linkname
            climbs = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if not target.startswith("/") and (climbs == ".." or climbs.startswith("../")):
                raise LookupError(
                    f"invalid symlink {rel!r} -> {target!r}: outside of {self.dest!r}"
                )
            os.symlink(target, base, dir_fd=pfd)
        elif member.islnk():
            link_rel = _inside(member.linkname, self.dest)
            link_parent, _, link_base = link_rel.rpartition("/")
            sfd = self.resolve(link_parent, create=False) if link_parent else self.dest_fd
            try:
                os.link(link_base, base, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                if sfd != self.dest_fd:
                    os.close(sfd)
            return  # a hard link shares its target's inode: owner, mode and times with it
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
        else:
            raise LookupError(f"{member.name!r}: unsupported tar member type {member.type!r}")
        os.chown(base, *self.ids(member), dir_fd=pfd, follow_symlinks=False)
        if not member.issym():  # a node we just made: chmod by name cannot be led away
            os.chmod(base, mode, dir_fd=pfd)
        os.utime(base, (member.mtime, member.mtime), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory times last (their children changed them), each resolved again."""
        self.close()
        for rel, mtime in self.dir_times:
            try:
                fd = self.resolve(rel, create=False)
            except OSError:
                continue  # replaced by a later member
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)


def extract(tar: tarfile.TarFile, dest: str, owner: tuple[int, int] | None = None) -> None:
    """Unpack TAR into DEST (made 0755 when missing), its members owned by OWNER when
    given (ADD --chown), else by their own ids, as BuildKit's unpack does."""
    os.makedirs(dest, 0o755, exist_ok=True)
    dest_fd = os.open(dest, _DIR)
    unpacker = _Unpacker(dest_fd, dest, owner)
    try:
        with tar:
            for member in tar:
                unpacker.member(tar, member)
        unpacker.finish()
    finally:
        unpacker.close()
        os.close(dest_fd)
