"""RUN --mount: BuildKit's mount types (parsed by recipe/mounts.py) made sandbox mounts.

- bind (the default type): a path of the build context, read-only unless `rw` (writes are
  then thrown away, as in BuildKit). Its content is part of the step's cache key.
- bind from=STAGE|IMAGE: a path of that stage's (or image's) root, copied out for the step;
  the source's key and the path are part of the step's key.
- cache: a directory kept in the store across builds (by `id`, default the target), for
  package-manager caches. Not part of the key. With from=, one per id and source, made
  from the source's files.
- tmpfs: an empty tmpfs.
- secret: what the build got with `--secret id=ID,src=PATH` (or `env=VAR`), held in memory:
  a read-only file at /run/secrets/ID (or target=) on a tmpfs of the sandbox's own, and/or
  with `env=NAME` the environment variable NAME; never part of the key, never in a layer,
  never in the image's config or history, never on a disk.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from builder.engine.context import BuildContext, ContextEntry
from builder.engine.copier import Dirs
from builder.engine.executor import Mount
from builder.layer.tree import open_below, remove_tree
from builder.recipe.mounts import MountError, RunMount
from builder.record import dataclass, field

if TYPE_CHECKING:
    from builder.store.containers import CacheMounts


@dataclass
class PreparedMounts:
    """Sandbox mounts for one RUN, and what to clean up after it."""

    mounts: list[Mount] = field(default_factory=list)
    cleanup: list[Path] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # NAME=VALUE of secrets asked with env=
    locks: list[int] = field(default_factory=list)

    def lock(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.locks.append(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)

    def close(self) -> None:
        for fd in self.locks:
            os.close(fd)
        self.locks.clear()
        for path in self.cleanup:
            remove_tree(path, ignore_errors=True)


def _context_subtree(context: BuildContext, source: str) -> tuple[str, list[ContextEntry]]:
    rel = posixpath.normpath("/" + source).lstrip("/")
    rel = "" if rel == "." else rel
    entries = context.entries
    if rel and rel not in entries:
        raise MountError(f"--mount source={source}: not in the build context")
    prefix = f"{rel}/" if rel else ""
    below = [e for path, e in sorted(entries.items()) if path == rel or path.startswith(prefix)]
    return rel, below


def bind_key(context: BuildContext, source: str) -> str:
    _rel, below = _context_subtree(context, source)
    h = hashlib.sha256()
    for e in below:
        line = f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.digest}\n"
        h.update(line.encode("utf-8", "surrogateescape"))  # a non-UTF-8 name: its bytes
    return h.hexdigest()


def materialize(context: BuildContext, source: str, dest: Path) -> Path:
    """The visible (.dockerignore-filtered) part of the context under SOURCE, copied to
    DEST: a bind of the real directory would show ignored files and let `rw` writes reach
    the user's tree. Names are copied as the bytes they are, at any depth (fd-relative)."""
    rel, below = _context_subtree(context, source)
    top = context.entries.get(rel) if rel else None
    root_fd = os.open(context.root, _DIR)
    try:
        if top is not None and top.kind != "dir":
            dest.mkdir(exist_ok=True)
            target = dest / posixpath.basename(rel)
            dest_fd = os.open(dest, _DIR)
            try:
                _copy_file(root_fd, top, dest_fd, os.fsencode(target.name))
            finally:
                os.close(dest_fd)
            return target
        dest.mkdir(exist_ok=True)
        dest_fd = os.open(dest, _DIR)
        dirs = Dirs(dest_fd)
        try:
            for e in below:
                if e.path == rel:
                    continue
                inner = e.path[len(rel) + 1 :] if rel else e.path
                if e.kind == "dir":
                    dirs.open(inner)
                    continue
                parent, _, name = inner.rpartition("/")
                pfd = dirs.open(parent)
                if e.kind == "symlink":
                    os.symlink(e.digest, name, dir_fd=pfd)
                else:
                    _copy_file(root_fd, e, pfd, os.fsencode(name))
        finally:
            dirs.close()
            os.close(dest_fd)
    finally:
        os.close(root_fd)
    return dest


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _copy_file(root_fd: int, entry: ContextEntry, dir_fd: int, name: bytes) -> None:
    """The context file `entry` as `name` in `dir_fd`, with its mode and mtime (copy2's)."""
    src = open_below(root_fd, os.fsencode(entry.path), os.O_RDONLY)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=dir_fd)
        try:
            with open(src, "rb", closefd=False) as reader, open(dst, "wb", closefd=False) as out:
                shutil.copyfileobj(reader, out, 1 << 20)
            os.fchmod(dst, entry.mode)
            os.utime(dst, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def cache_dir(
    mounts: CacheMounts,
    mount: RunMount,
    source_key: str | None = None,
    seed: Callable[[Path], object] | None = None,
) -> Path:
    """The cache mount's dir. With from=, BuildKit keeps one cache per id and source
    (its key is the id and the source's ref), made from the source's files (`seed`)."""
    mode = mount.mode if mount.mode is not None else 0o755
    ident = mount.id or mount.target
    if source_key is not None:
        ident += f"\0from={source_key}:{posixpath.normpath('/' + (mount.source or '/'))}"
    return mounts.get(ident, mode=mode, uid=mount.uid, gid=mount.gid, seed=seed)


def secret_mount(secrets: Mapping[str, bytes], mount: RunMount) -> tuple[Mount | None, str | None]:
    """The secret's file mount (None when the step asks only for `env=`) and its
    environment entry `NAME=VALUE` (None unless `env=`); both None when the build has no
    such secret and the mount does not say `required`, as BuildKit skips it. The bytes go
    to the sandbox in memory: it writes them to a tmpfs of its own (sandbox/mounts.py)."""
    ident = mount.id or posixpath.basename(mount.target)
    data = secrets.get(ident)
    if data is None:
        if mount.required:  # BuildKit's words (session/secrets)
            raise MountError(
                f"secret {ident}: not found (pass --secret id={ident},src=FILE or env=VAR)"
            )
        return None, None
    entry = None
    if mount.env is not None:
        if b"\0" in data:
            raise MountError(
                f"--mount type=secret,id={ident},env={mount.env}: the secret holds a NUL byte"
            )
        entry = f"{mount.env}={os.fsdecode(data)}"
    if not mount.target:  # env= alone: no file
        return None, entry
    mode = mount.mode if mount.mode is not None else 0o400
    file = Mount(mount.target, "file", data=data, mode=mode, uid=mount.uid, gid=mount.gid)
    return file, entry
