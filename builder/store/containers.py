"""The store's writable dirs: `builder run`'s containers and RUN's cache mounts.

Neither is content-addressed or reachable from an image; gc removes them only when asked
(`prune --all` / containers kept by `run` without --rm), under its exclusive lock.

A container is root/containers/<64-hex id>/ holding config.json, state.json, owner.lock
(container_record.py), container.log (a detached one's output) and the overlay's upper and
work dirs. It is made in tmp/ and renamed into place with its owner lock already held, so
a reader never sees one half made or without its owner. Names are unique: the check and
the rename happen under root/containers.lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from builder.errors import BuilderError, UsageError
from builder.layer.tree import remove_tree
from builder.record import dataclass, field, replace
from builder.store.container_record import (
    ContainerConfig,
    ContainerState,
    as_json,
    config_from,
    owner_alive,
    read_json,
    state_from,
    take_owner_lock,
    write_json,
)
from builder.store.paths import StorePaths
from builder.store.removal import remove_children

# docker's rule for --name (daemon/names): a letter or digit, then letters, digits, _ . -
_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]+"
_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "sharp")
_NOUNS = ("turing", "hopper", "lovelace", "ritchie", "thompson", "knuth", "liskov", "perlman")


def _below(n: int) -> int:
    """A random number in [0, n) from os.urandom (secrets' source, without its imports);
    the modulo's bias is below 1e-6 for the small n used here."""
    return int.from_bytes(os.urandom(4), "big") % n


def _pick(choices: tuple[str, ...]) -> str:
    return choices[_below(len(choices))]


class NoSuchContainer(BuilderError):
    """docker's `No such container`: exit 1, as the docker CLI's verbs exit."""

    exit_code = 1


@dataclass(frozen=True)
class Container:
    """A container's home: its id, and the files and dirs inside."""

    id: str
    home: Path
    # The owner lock's fd, in the process that created the container (-1 elsewhere).
    owner_fd: int = field(default=-1, compare=False)

    @property
    def upper(self) -> Path:
        return self.home / "upper"

    @property
    def work(self) -> Path:
        return self.home / "work"

    @property
    def log(self) -> Path:
        return self.home / "container.log"

    @property
    def owner_lock(self) -> Path:
        return self.home / "owner.lock"

    def config(self) -> ContainerConfig | None:
        value = read_json(self.home / "config.json")
        return None if value is None else config_from(value)

    def state(self) -> ContainerState:
        return state_from(read_json(self.home / "state.json"))

    def set_state(self, state: ContainerState) -> None:
        write_json(self.home / "state.json", as_json(state))

    def running(self) -> bool:
        """Whether its owner (the process that runs it) is alive."""
        return owner_alive(self.owner_lock)


class Containers:
    """root/containers/<id>/."""

    def __init__(self, paths: StorePaths) -> None:
        self._paths = paths

    def create(
        self, config: ContainerConfig | None = None, *, staging: Path | None = None
    ) -> Container:
        """A new container; its `owner_fd` holds the owner lock, the caller's to keep open
        while it runs the container and to close after writing the final state. `staging`:
        an empty dir of ours under the store's tmp/ (swept if we are killed before the
        rename)."""
        # os.urandom, as secrets draws it: importing secrets (random, hmac, base64) was a
        # cost of `run`'s start-up.
        container_id = os.urandom(32).hex()
        home = self._paths.containers / container_id
        build = staging if staging is not None else home.with_name(f".new-{container_id}")
        self._paths.containers.mkdir(parents=True, exist_ok=True)
        build.mkdir(exist_ok=True)
        fd = -1
        try:
            fd = take_owner_lock(build / "owner.lock")
            (build / "upper").mkdir()
            (build / "work").mkdir()
            with self._names_locked():
                if config is not None:
                    if config.name:
                        self._check_name(config.name)
                    else:
                        config = replace(config, name=self._free_name())
                    write_json(build / "config.json", as_json(config))
                # No state.json yet: a reader takes a missing one as ContainerState()
                # ("created"), so writing it cost `run` a file for nothing (issue 9).
                os.rename(build, home)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            remove_tree(build, ignore_errors=True)
            raise
        return Container(container_id, home, fd)

    @contextlib.contextmanager
    def _names_locked(self) -> Iterator[None]:
        fd = os.open(self._paths.containers_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _names(self) -> dict[str, Container]:
        """Name -> container; also removes the --rm containers whose owner was killed
        before it could remove them (their names are free again)."""
        out = {}
        for container in self.list():
            config = container.config()
            if config is None:
                continue
            if config.auto_remove and not container.running():
                self.remove(container)
                continue
            out[config.name] = container
        return out

    def _check_name(self, name: str) -> None:
        if not re.fullmatch(_NAME, name):
            raise UsageError(
                f'invalid container name "{name}", only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
            )
        taken = self._names().get(name)
        if taken is not None:
            raise UsageError(
                f'Conflict. The container name "/{name}" is already in use by container'
                f' "{taken.id}". You have to remove (or rename) that container to be able'
                " to reuse that name."
            )

    def _free_name(self) -> str:
        taken = self._names()
        while True:
            name = f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}"
            if name in taken:
                name += f"_{_below(1000)}"
            if name not in taken:
                return name

    def remove(self, container: Container) -> None:
        remove_tree(container.home, ignore_errors=True)

    def list(self) -> list[Container]:
        """Every container, by id."""
        try:
            names = sorted(p.name for p in self._paths.containers.iterdir())
        except FileNotFoundError:
            return []
        return [Container(n, self._paths.containers / n) for n in names if not n.startswith(".")]

    def find(self, ref: str) -> Container:
        """docker's lookup: a full id, else a name, else a unique id prefix."""
        every = self.list()
        for c in every:
            if c.id == ref:
                return c
        named = self._names().get(ref.lstrip("/"))
        if named is not None:
            return named
        matches = [c for c in every if ref and c.id.startswith(ref.lower())]
        if len(matches) > 1:
            raise NoSuchContainer(f"multiple IDs found with provided prefix: {ref}")
        if not matches:
            raise NoSuchContainer(f"No such container: {ref}")
        return matches[0]

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
