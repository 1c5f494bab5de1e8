"""The store's writable dirs: `builder run`'s containers and RUN's cache mounts.

Neither is content-addressed or reachable from an image; gc removes them only when asked
(`prune --all` / containers kept by `run` without --rm), under its exclusive lock.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.layer.tree import remove_tree
from builder.store.paths import StorePaths
from builder.store.removal import remove_children


@dataclass(frozen=True)
class Container:
    """A container's home: its id, and the overlay's upper and work dirs inside."""

    id: str
    home: Path

    @property
    def upper(self) -> Path:
        return self.home / "upper"

    @property
    def work(self) -> Path:
        return self.home / "work"


class Containers:
    """root/containers/<id>/{upper,work}."""

    def __init__(self, paths: StorePaths) -> None:
        self._paths = paths

    def create(self) -> Container:
        container_id = secrets.token_hex(6)
        container = Container(container_id, self._paths.containers / container_id)
        container.upper.mkdir(parents=True)
        container.work.mkdir()
        return container

    def remove(self, container: Container) -> None:
        remove_tree(container.home, ignore_errors=True)

    def list(self) -> list[Container]:
        if not self._paths.containers.is_dir():
            return []
        return [Container(p.name, p) for p in sorted(self._paths.containers.iterdir())]

    def clear(self) -> int:
        """Remove every container (the caller knows none runs); returns the bytes freed."""
        return remove_children(self._paths.containers)


class CacheMounts:
    """root/mounts/cache/<hash of id>: the dirs RUN --mount=type=cache binds in."""

    def __init__(self, paths: StorePaths) -> None:
        self._paths = paths

    def get(
        self,
        ident: str,
        *,
        mode: int,
        uid: int,
        gid: int,
        seed: Callable[[Path], object] | None = None,
    ) -> Path:
        """The dir for `ident`, made on first use with that mode and owner and filled by
        `seed` (RUN --mount=type=cache,from=); later uses get it as the first one left it,
        as BuildKit does."""
        path = self._paths.cache_mounts / hashlib.sha256(ident.encode()).hexdigest()[:32]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(path.name + f".new-{os.getpid()}")
            staging.mkdir(mode=mode)
            if os.geteuid() == 0:  # rootless, ours is the only id mapped (as uid 0) anyway
                os.chown(staging, uid, gid)
            if seed is not None:
                try:
                    seed(staging)
                except BaseException:
                    remove_tree(staging, ignore_errors=True)
                    raise
            try:
                staging.rename(path)
            except OSError:
                remove_tree(staging, ignore_errors=True)  # another build made it first
        return path

    def clear(self) -> int:
        return remove_children(self._paths.cache_mounts)
