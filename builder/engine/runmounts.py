"""RUN --mount: BuildKit's mount types, parsed and turned into sandbox mounts.

- bind (the default type): a path of the build context, read-only unless `rw` (writes are
  then thrown away, as in BuildKit). Its content is part of the step's cache key.
- cache: a directory kept in the store across builds (by `id`, default the target), for
  package-manager caches. Not part of the key.
- tmpfs: an empty tmpfs.
- secret: a file given to the build with `--secret id=ID,src=PATH` (or `env=VAR`), mounted
  read-only at /run/secrets/ID; never part of the key, never in a layer.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.engine.context import BuildContext, ContextEntry
from builder.engine.executor import Mount

_TRUE = {"", "true", "1"}
_FALSE = {"false", "0"}
_KEYS = {
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "readonly",
    "ro",
    "rw",
    "readwrite",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "required",
    "size",
    "env",
}


class MountError(ValueError):
    """A --mount value that is not valid (or not supported yet); the caller adds where."""


@dataclass(frozen=True)
class RunMount:
    type: str
    target: str
    source: str | None = None
    from_: str | None = None
    readonly: bool = True
    id: str | None = None
    sharing: str = "shared"
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    required: bool = False


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise MountError(f"--mount {key}={value}: expected true or false")


def parse_mount(spec: str) -> RunMount:
    values: dict[str, str] = {}
    for part in spec.split(","):
        key, _eq, value = part.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise MountError(f"--mount: unknown option {key!r}")
        values[key] = value
    kind = values.pop("type", "bind") or "bind"
    if kind not in ("bind", "cache", "tmpfs", "secret", "ssh"):
        raise MountError(f"--mount type={kind}: expected bind, cache, tmpfs, secret or ssh")
    if kind == "ssh":
        raise MountError("--mount type=ssh is not supported yet")
    target = (
        values.pop("target", None) or values.pop("dst", None) or values.pop("destination", None)
    )
    readonly = kind in ("bind", "secret")
    for key in ("readonly", "ro"):
        if key in values:
            readonly = _flag(key, values.pop(key))
    for key in ("rw", "readwrite"):
        if key in values:
            readonly = not _flag(key, values.pop(key))
    ident = values.pop("id", None)
    if kind == "secret" and target is None:
        name = ident or ""
        if not name:
            raise MountError("--mount type=secret needs id= or target=")
        target = f"/run/secrets/{name}"
    if not target:
        raise MountError(f"--mount type={kind} needs target=")
    if not target.startswith("/"):
        raise MountError(f"--mount target={target}: must be an absolute path")
    sharing = values.pop("sharing", "shared")
    if sharing not in ("shared", "private", "locked"):
        raise MountError(f"--mount sharing={sharing}: expected shared, private or locked")
    try:
        mode = int(values.pop("mode"), 8) if "mode" in values else None
        uid = int(values.pop("uid", "0") or 0)
        gid = int(values.pop("gid", "0") or 0)
    except ValueError as err:
        raise MountError(f"--mount: {err}") from None
    required = _flag("required", values.pop("required")) if "required" in values else False
    source = values.pop("source", None) or values.pop("src", None)
    from_ = values.pop("from", None)
    if from_ is not None:
        raise MountError(f"--mount from={from_} is not supported yet (mount the context)")
    if "size" in values or "env" in values:
        raise MountError(f"--mount {', '.join(values)} is not supported yet")
    return RunMount(
        kind,
        posixpath.normpath(target),
        source,
        from_,
        readonly,
        ident or (target if kind == "cache" else None),
        sharing,
        mode,
        uid,
        gid,
        required,
    )


@dataclass
class PreparedMounts:
    """Sandbox mounts for one RUN, and what to clean up after it."""

    mounts: list[Mount] = field(default_factory=list)
    cleanup: list[Path] = field(default_factory=list)
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
            shutil.rmtree(path, ignore_errors=True)


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
        h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.digest}\n".encode())
    return h.hexdigest()


def materialize(context: BuildContext, source: str, dest: Path) -> Path:
    """The visible (.dockerignore-filtered) part of the context under SOURCE, copied to
    DEST: a bind of the real directory would show ignored files and let `rw` writes reach
    the user's tree."""
    rel, below = _context_subtree(context, source)
    root = context.root
    top = context.entries.get(rel) if rel else None
    if top is not None and top.kind != "dir":
        target = dest / posixpath.basename(rel)
        shutil.copy2(root / rel, target, follow_symlinks=False)
        return target
    dest.mkdir(exist_ok=True)
    for e in below:
        if e.path == rel:
            continue
        inner = e.path[len(rel) + 1 :] if rel else e.path
        path = dest / inner
        if e.kind == "dir":
            path.mkdir(exist_ok=True)
        elif e.kind == "symlink":
            os.symlink(e.digest, path)
        else:
            shutil.copy2(root / e.path, path, follow_symlinks=False)
    return dest


def cache_dir(store_root: Path, mount: RunMount) -> Path:
    ident = mount.id or mount.target
    path = store_root / "mounts" / "cache" / hashlib.sha256(ident.encode()).hexdigest()[:32]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + f".new-{os.getpid()}")
        staging.mkdir(mode=mount.mode if mount.mode is not None else 0o755)
        if os.geteuid() == 0:  # rootless, ours is the only id mapped (as uid 0) anyway
            os.chown(staging, mount.uid, mount.gid)
        try:
            staging.rename(path)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another build made it first
    return path


def secret_file(secrets: Mapping[str, Path], mount: RunMount, staging: Path) -> Path | None:
    ident = mount.id or posixpath.basename(mount.target)
    source = secrets.get(ident)
    if source is None:
        if mount.required:
            raise MountError(
                f"--mount type=secret,id={ident}: no such secret"
                f" (pass --secret id={ident},src=FILE)"
            )
        return None
    copy = staging / f"secret-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mount.mode or 0o400)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    if os.geteuid() == 0:  # as for cache_dir
        os.chown(copy, mount.uid, mount.gid)
    return copy
