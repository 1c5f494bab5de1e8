"""unpack_layer: a layer blob (untrusted) -> a dir in overlay form, usable as a lowerdir;
or, with `flatten=True`, applied onto a dir holding the layers below it (whiteouts delete),
which is how an image's root filesystem is exported.

Safety comes from never resolving a path string: every entry is reached by opening its parent
directories one component at a time from `dest` with O_NOFOLLOW, so a symlink planted by an
earlier entry (`a -> /etc`) can never carry a later one (`a/passwd`) out of `dest`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.layer import whiteout as wh
from builder.layer.compression import open_decompressed
from builder.layer.tree import remove_entry
from builder.record import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_XATTR_PREFIX = "SCHILY.xattr."


class _HashingReader:
    """Hash every byte tarfile reads, so the diff_id is checked without a second pass."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


@dataclass(frozen=True)
class _DirTimes:
    parts: tuple[str, ...]
    mtime_ns: int


def split_name(name: str) -> list[str]:
    """The path components of a tar member name; LayerError if it could leave the root."""
    if name.startswith("/"):
        raise LayerError(f"layer entry {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {name!r}: '..' in path")
    return parts


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR_PREFIX):
            name = key[len(_XATTR_PREFIX) :]
            # A layer must not speak overlayfs' private language (a forged redirect or
            # opaque xattr would change what the merged view shows).
            if not wh.is_overlay_xattr(name):
                out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


# The open chain keeps at most this many dir fds: a layer may be thousands of dirs deep,
# more than the process may have open. A closed link is opened again from the nearest
# open one above it when an entry needs it.
_MAX_OPEN = 64


class _Extractor:
    def __init__(self, root_fd: int, flatten: bool = False) -> None:
        self.root_fd = root_fd
        self.flatten = flatten  # apply whiteouts to what is below instead of recording them
        # The parents of the last entry: [name, fd or -1 when closed to bound the fds].
        self.chain: list[list[str | int]] = []
        self.open_from = 0  # chain[i] for i < open_from are closed
        self.files: set[tuple[str, ...]] = set()  # non-dirs made here: valid link targets
        self.dirs: dict[tuple[str, ...], _DirTimes] = {}
        self.parents: set[tuple[str, ...]] = set()  # dirs holding an entry of this layer

    def close(self) -> None:
        self._truncate(0)

    def _truncate(self, keep: int) -> None:
        for link in self.chain[keep:]:
            if isinstance(link[1], int) and link[1] >= 0:
                os.close(link[1])
        del self.chain[keep:]
        self.open_from = min(self.open_from, keep)

    def _fd_at(self, depth: int, member: str) -> int:
        """The fd of chain[depth - 1] (the root for 0), reopened if it was closed."""
        if depth == 0:
            return self.root_fd
        fd = self.chain[depth - 1][1]
        assert isinstance(fd, int)
        if fd >= 0:
            return fd
        # Reopen downwards from the nearest open link above (or the root).
        start = depth - 1
        while start > 0 and int(self.chain[start - 1][1]) < 0:
            start -= 1
        parent = self.root_fd if start == 0 else int(self.chain[start - 1][1])
        for i in range(start, depth):
            parent = self._open_dir(parent, str(self.chain[i][0]), member, create=False)
            self.chain[i][1] = parent
        self.open_from = min(self.open_from, start)
        self._bound()
        return int(self.chain[depth - 1][1])

    def _bound(self) -> None:
        """Close the shallowest open links past _MAX_OPEN (the deepest are the ones the
        next entries need)."""
        while len(self.chain) - self.open_from > _MAX_OPEN:
            link = self.chain[self.open_from]
            if int(link[1]) >= 0:
                os.close(int(link[1]))
                link[1] = -1
            self.open_from += 1

    def _open_dir(self, parent: int, comp: str, member: str, create: bool) -> int:
        try:
            return os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as err:
            raise LayerError(
                f"layer entry {member!r}: parent {comp!r} is a symlink or not a directory"
            ) from err
        # Tar writers may omit parent dirs; make them as tar does (0755, root).
        os.mkdir(comp, 0o755, dir_fd=parent)
        return os.open(comp, _DIR_FLAGS, dir_fd=parent)

    def parent_fd(self, parts: list[str], member: str, *, create: bool = True) -> int:
        """An fd of the entry's parent dir, reusing the open chain of the previous entry.
        Missing parents are made (and recorded as this layer's) when `create`."""
        dirs = parts[:-1]
        keep = 0
        while keep < len(self.chain) and keep < len(dirs) and self.chain[keep][0] == dirs[keep]:
            keep += 1
        self._truncate(keep)
        fd = self._fd_at(keep, member)
        key = tuple(dirs[:keep])
        for comp in dirs[keep:]:
            fd = self._open_dir(fd, comp, member, create=create)
            self.chain.append([comp, fd])
            if not create:
                continue
            key = (*key, comp)
            self.parents.add(key)
            if self.flatten and key not in self.dirs:
                # A dir of a layer below that this one writes into without a header of its
                # own keeps its time: the flattened tree must not depend on when it was made.
                self.dirs[key] = _DirTimes(key, os.fstat(fd).st_mtime_ns)
        self._bound()
        return self._fd_at(len(dirs), member)

    def open_existing(self, parts: tuple[str, ...] | list[str], member: str) -> int:
        """A fresh fd of an existing dir (caller closes); FileNotFoundError if gone."""
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                nxt = self._open_dir(fd, comp, member, create=False)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def extract(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = split_name(member.name)
        if not parts:
            return  # the root itself ("./"): dest's own metadata is the store's business
        pfd = self.parent_fd(parts, member.name)
        base = parts[-1]
        key = tuple(parts)
        if wh.is_oci_opaque(base):
            if self.flatten:
                self._purge_lower(pfd, key[:-1])
            else:
                wh.make_overlay_opaque(pfd)
            return
        target = wh.oci_whiteout_target(base)
        if target is not None:
            if target in ("", ".", ".."):
                raise LayerError(f"layer entry {member.name!r}: bad whiteout")
            self._remove(pfd, target)
            self.files.discard((*key[:-1], target))
            if not self.flatten:
                wh.make_overlay_whiteout(target, pfd)
            return
        mode = member.mode & 0o7777
        xattrs = _xattrs(member)
        mtime_ns = int(member.mtime * 1_000_000_000)
        if member.isdir():
            try:
                if not stat.S_ISDIR(os.lstat(base, dir_fd=pfd).st_mode):
                    self._remove(pfd, base)
                    os.mkdir(base, 0o700, dir_fd=pfd)
            except FileNotFoundError:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
            try:
                self._meta(fd, member, mode, xattrs)
            finally:
                os.close(fd)
            self.files.discard(key)
            self.dirs[key] = _DirTimes(key, mtime_ns)
            return
        self._remove(pfd, base)
        self.dirs.pop(key, None)
        if member.isreg():
            self._file(pfd, base, member, tar, mode, xattrs, mtime_ns)
        elif member.islnk():
            self._hardlink(pfd, base, member)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            self._node_meta(pfd, base, member, None, xattrs, mtime_ns)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            os.mknod(base, kind | 0o600, dev, dir_fd=pfd)
            self._node_meta(pfd, base, member, mode, xattrs, mtime_ns)
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
            self._node_meta(pfd, base, member, mode, xattrs, mtime_ns)
        else:
            raise LayerError(f"layer entry {member.name!r}: unsupported tar type {member.type!r}")
        self.files.add(key)

    @staticmethod
    def _remove(pfd: int, name: str) -> None:
        """Clear the way for an entry: later duplicates win, as in `tar -x`."""
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            remove_entry(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)

    def _purge_lower(self, dir_fd: int, parts: tuple[str, ...]) -> None:
        """An opaque dir, flattened: remove what the layers below put in it, at any depth;
        keep what this layer wrote (its entries may come before the marker). Iterative:
        a stack of (dir fd, its parts, names left), for trees of any depth."""
        stack = [(os.dup(dir_fd), parts, sorted(os.listdir(dir_fd), reverse=True))]
        try:
            while stack:
                fd, where, names = stack[-1]
                if not names:
                    os.close(fd)
                    stack.pop()
                    continue
                name = names.pop()
                key = (*where, name)
                if key in self.files:
                    continue
                if key in self.dirs or key in self.parents:
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError:
                        continue  # replaced by a non-dir of this layer since: kept as it is
                    stack.append((child, key, sorted(os.listdir(child), reverse=True)))
                    continue
                self._remove(fd, name)
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    @staticmethod
    def _meta(fd: int, member: tarfile.TarInfo, mode: int, xattrs: list[tuple[str, bytes]]) -> None:
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, mode)  # after chown, which clears setuid bits
        for name, value in xattrs:
            os.setxattr(fd, name, value)

    def _file(
        self,
        pfd: int,
        base: str,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile,
        mode: int,
        xattrs: list[tuple[str, bytes]],
        mtime_ns: int,
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(member)
            if src is not None:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            self._meta(fd, member, mode, xattrs)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        target = tuple(split_name(member.linkname))
        if target not in self.files:
            raise LayerError(
                f"layer entry {member.name!r}: hard link to {member.linkname!r}, "
                "which is not a file earlier in this layer"
            )
        tfd = self.open_existing(target[:-1], member.name)
        try:
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    @staticmethod
    def _node_meta(
        pfd: int,
        base: str,
        member: tarfile.TarInfo,
        mode: int | None,
        xattrs: list[tuple[str, bytes]],
        mtime_ns: int,
    ) -> None:
        os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if mode is not None:  # not a symlink: we just made this node, chmod cannot be led away
            os.chmod(base, mode, dir_fd=pfd)
        # setxattr has no dir_fd form; /proc/self/fd/N/base names the node without following it.
        for name, value in xattrs:
            os.setxattr(f"/proc/self/fd/{pfd}/{base}", name, value, follow_symlinks=False)
        os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Set dir mtimes last: creating children changed them. Parents first, so that the
        chain of open dirs only grows from one dir to the next (setting a child's times
        does not touch its parent's)."""
        self.close()
        for times in sorted(self.dirs.values(), key=lambda t: t.parts):
            parts = list(times.parts)
            try:
                fd = self.parent_fd([*parts, "."], "/".join(parts), create=False)
            except (FileNotFoundError, LayerError):
                continue  # replaced or whited out by a later entry
            os.utime(fd, ns=(times.mtime_ns, times.mtime_ns))
        self.close()


def unpack_layer(
    blob: BinaryIO,
    dest: Path,
    *,
    expected_diff_id: Digest | None = None,
    flatten: bool = False,
) -> Digest:
    """Extract a layer (gzip/zstd/plain, sniffed) into `dest` in overlay form; return its diff_id.

    OCI whiteouts become char devices 0/0, opaque markers the `trusted.overlay.opaque` xattr.
    With `flatten`, `dest` holds the layers below (applied the same way) and whiteouts are
    applied to it instead: a whited-out entry is removed, an opaque dir loses what the
    layers below put in it.
    LayerError names the entry for anything unsafe or corrupt, or on a diff_id mismatch.
    """
    reader = _HashingReader(open_decompressed(blob))
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, _DIR_FLAGS)
    ex = _Extractor(root_fd, flatten)
    member_name = "(header)"
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                member_name = member.name
                ex.extract(member, tar)
        reader.drain()  # the zero blocks after the end marker are part of the diff_id too
        ex.finish()
    except tarfile.TarError as err:
        raise LayerError(f"corrupt layer tar after entry {member_name!r}: {err}") from None
    except LayerError:
        raise
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the disk's fault, not the layer's: the caller names what it was writing
        raise LayerError(f"layer entry {member_name!r}: {err.strerror or err}") from None
    finally:
        ex.close()
        with contextlib.suppress(OSError):
            os.close(root_fd)
    diff_id = Digest.from_hash(reader.hash)
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise LayerError(f"layer content is {diff_id}, expected diff_id {expected_diff_id}")
    return diff_id
