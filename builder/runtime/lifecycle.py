"""What `builder stop`, `rm`, `wait` and `logs` do to a container, running or not.

A container is running while its owner (the attached CLI or the detached supervisor) holds
its owner lock: only then is the pid in its state file pid 1 of ours, safe to signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from builder.errors import BuilderError
from builder.runtime.container import signal_number
from builder.store.container_record import wait_owner
from builder.store.containers import Container, Containers


class ContainerBusy(BuilderError):
    """docker's refusal to remove a running container without -f: exit 1."""

    exit_code = 1


def _signal(container: Container, signum: int) -> None:
    """Signal pid 1, waiting for it if the container is still being set up (its owner
    writes the pid once the sandbox is ready to exec)."""
    while container.running():
        pid = container.state().pid
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            return
        time.sleep(0.02)


def stop(container: Container, timeout: float | None = None) -> None:
    """The stop signal (the image's StopSignal, else SIGTERM), then SIGKILL after
    `timeout` (the container's --stop-timeout, else 10 s) if it is still running."""
    if not container.running():
        return
    config = container.config()
    signum = signal_number(config.stop_signal if config else "SIGTERM")
    grace = timeout if timeout is not None else (config.stop_timeout if config else 10.0)
    if grace < 0:  # docker: -1 waits for ever
        _signal(container, signum)
        wait_owner(container.owner_lock)
        return
    _signal(container, signum)
    if not wait_owner(container.owner_lock, grace):
        _signal(container, signal.SIGKILL)
        wait_owner(container.owner_lock)


def remove(containers: Containers, container: Container, *, force: bool) -> None:
    """Remove a stopped container (with `force`, kill a running one first)."""
    if container.running():
        if not force:
            raise ContainerBusy(
                f"cannot remove container {container.id[:12]}: container is running: stop the"
                " container before removing or force remove"
            )
        _signal(container, signal.SIGKILL)
        wait_owner(container.owner_lock)
    containers.remove(container)


def wait(container: Container) -> int:
    """Block until the container ends; its exit code."""
    wait_owner(container.owner_lock)
    state = container.state()
    return state.exit_code if state.exit_code is not None else 255


def follow(container: Container, *, follow: bool) -> Iterator[bytes]:
    """The log's bytes; with `follow`, until the container ends and the log is drained."""
    try:
        f = open(container.log, "rb")  # noqa: SIM115 - closed below, read as it grows
    except FileNotFoundError:
        return
    with f:
        while True:
            chunk = f.read(65536)
            if chunk:
                yield chunk
                continue
            if not follow or not container.running():
                rest = f.read()  # what was written between the read and the check
                if rest:
                    yield rest
                return
            time.sleep(0.1)
