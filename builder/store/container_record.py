"""What a container's directory says about it: config.json (fixed at creation) and
state.json (rewritten by its owner as it starts and ends), and who owns it now.

The owner is the process that runs the container (`builder run`, or the detached
supervisor `run -d` leaves behind): it holds an exclusive flock on `owner.lock` from before
the directory appears under containers/ until after it wrote the final state. So a reader
tells a running container from a dead one (its owner was killed) without trusting a pid,
and `builder wait` waits for the flock. The files are replaced by rename: a reader sees the
old or the new state, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Literal

from builder.errors import StoreError
from builder.record import asdict, dataclass

Status = Literal["created", "running", "exited"]


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    image: str  # as the user named it
    command: tuple[str, ...]
    created: float
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    auto_remove: bool = False  # --rm
    detached: bool = False  # its output is in container.log


@dataclass(frozen=True)
class ContainerState:
    status: Status = "created"
    pid: int = 0  # pid 1's host pid while running
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Atomic replace without fsync: a container's state does not outlive a reboot (its
    processes do not), and `builder run`'s start time is what issue 9 measures."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(value, sort_keys=True))
    os.rename(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def config_from(value: dict[str, Any]) -> ContainerConfig | None:
    try:
        value = {**value, "command": tuple(value["command"])}
        return ContainerConfig(**value)
    except (KeyError, TypeError):
        return None


def state_from(value: dict[str, Any] | None) -> ContainerState:
    if value is None:
        return ContainerState()
    with contextlib.suppress(TypeError):
        return ContainerState(**value)
    return ContainerState()


def as_json(value: ContainerConfig | ContainerState) -> dict[str, Any]:
    return asdict(value)


def take_owner_lock(path: Path) -> int:
    """Create and flock `path` exclusively; the fd (close-on-exec, inherited by forks) is
    the ownership: it ends when the last process holding it closes it or dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise StoreError(f"container lock {path}: {err.strerror}") from None
    return fd


def owner_alive(path: Path) -> bool:
    """Whether some process holds the owner flock at `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return True
        raise
    finally:
        os.close(fd)
    return False


def wait_owner(path: Path, timeout: float | None = None) -> bool:
    """Block until nobody holds the owner flock (True), or `timeout` passes (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while owner_alive(path):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
