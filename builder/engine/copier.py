"""The COPY step's writer. It runs INSIDE the sandbox, after pivot_root into the image.

Running in the image's own root means every symlink the image holds resolves inside the
image, never on the host; the build context is read through a directory fd opened before
the sandbox was entered, by relative paths, without following a final symlink.

Every writer takes `root`, the path at which it reaches the image: "/" in the sandbox. An
executor without one (the tests') passes a plain directory instead.
"""

from __future__ import annotations

import functools
import os
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

from builder.engine.context import CopyItem
from builder.engine.extract import extract, open_archive
from builder.sandbox.users import read_groups, read_passwd


@dataclass(frozen=True)
class Ownership:
    """--chown as written (`user[:group]`), resolved against the image's /etc files."""

    spec: str | None

    def resolve(self, root: str) -> tuple[int, int]:
        if not self.spec:
            return 0, 0
        user, _, group = self.spec.partition(":")
        if user.isdigit():
            uid = primary_gid = int(user)
        else:
            users = read_passwd(in_image(root, "/etc/passwd"))
            entry = next((u for u in users if u.name == user), None)
            if entry is None:
                raise LookupError(f"unable to find user {user!r} in /etc/passwd")
            uid, primary_gid = entry.uid, entry.gid
        if not group:
            return uid, primary_gid
        if group.isdigit():
            return uid, int(group)
        groups = read_groups(in_image(root, "/etc/group"))
        match = next((g for g in groups if g.name == group), None)
        if match is None:
            raise LookupError(f"unable to find group {group!r} in /etc/group")
        return uid, match.gid


def in_image(root: str, path: str) -> str:
    """PATH (absolute, as the image sees it) as a writer reaches it from ROOT."""
    return path if root == "/" else root.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class InlineFile:
    """A heredoc source: `COPY <<EOF /dest`."""

    content: bytes
    target: str
    mode: int = 0o644


def remove_non_dir(path: str) -> None:
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _write_file(src_fd: int, target: str, mode: int) -> int:
    remove_non_dir(target)
    dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o777)
    try:
        while os.sendfile(dst, src_fd, None, 1 << 30) > 0:
            pass
    except OSError:
        os.lseek(src_fd, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        while chunk := os.read(src_fd, 1 << 20):
            os.write(dst, chunk)
    return dst


P = ParamSpec("P")


def in_root(fn: Callable[P, int]) -> Callable[P, int]:
    """For code run inside the sandbox: a user's mistake (a missing file or user, a bad
    archive) becomes one line on stderr and status 1.

    os.write, not print: in a forked child, sys.stderr's lock may be held forever by a
    thread of the parent that was writing at the fork.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return fn(*args, **kwargs)
        except (LookupError, OSError, tarfile.TarError) as err:
            os.write(2, f"{err}\n".encode(errors="replace"))
            return 1

    return wrapper


@in_root
def copy_into_root(
    root: str,
    context_fd: int,
    items: list[CopyItem],
    inline: list[InlineFile],
    owner: Ownership,
    chmod: int | None,
    unpack_archives: bool = False,
) -> int:
    """Write the context items (and heredoc files) into the root we are in."""
    uid, gid = owner.resolve(root)
    dir_times: list[tuple[str, int]] = []
    for item in items:
        entry = item.entry
        target = in_image(root, item.target)
        # ADD unpacks a tar into DEST, or beside the name it would have had as a file.
        archive_dir = target if item.into_existing_dir else posixpath.dirname(target)
        if item.into_existing_dir and os.path.isdir(target):
            target = posixpath.join(target, item.name or posixpath.basename(entry.path))
        os.makedirs(posixpath.dirname(target) or "/", 0o755, exist_ok=True)
        mode = chmod if chmod is not None else entry.mode
        if entry.kind == "dir":
            os.makedirs(target, 0o755, exist_ok=True)
            os.chmod(target, mode)
            os.chown(target, uid, gid)
            dir_times.append((target, entry.mtime_ns))
        elif entry.kind == "symlink":
            remove_non_dir(target)
            os.symlink(entry.digest, target)
            os.lchown(target, uid, gid)
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        else:
            src = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=context_fd)
            try:
                archive = open_archive(src) if unpack_archives else None
                if archive is not None:
                    extract(archive, archive_dir)
                    continue
                dst = _write_file(src, target, mode)
            finally:
                os.close(src)
            try:
                os.fchown(dst, uid, gid)
                os.fchmod(dst, mode)  # after chown, which clears setuid bits
                os.utime(dst, ns=(entry.mtime_ns, entry.mtime_ns))
            finally:
                os.close(dst)
    for file in inline:
        file_target = in_image(root, file.target)
        os.makedirs(posixpath.dirname(file_target) or "/", 0o755, exist_ok=True)
        remove_non_dir(file_target)
        fd = os.open(file_target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, file.content)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, chmod if chmod is not None else file.mode)
        finally:
            os.close(fd)
    for path, mtime_ns in reversed(dir_times):  # children first changed their parents' mtimes
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return 0
