"""Network namespaces for `--network none`, each made by a thread before the sandbox that
joins it starts.

Making a network namespace, and bringing its lo up, takes the kernel's rtnl lock, which
every namespace made or torn down on the machine contends for: ~1 ms on a quiet machine,
5-100 ms on a busy one, measured on a build step's path. A build's RUN steps still get a
namespace each, as docker's do (a port one step left in TIME_WAIT is not the next one's),
but `Spare` makes the next one while the current step runs. A namespace is made by
unshare(2) in a thread of its own, which changes that thread only, and is kept by an fd of
/proc/thread-self/ns/net; the supervisor joins it with setns(2) (process.py).

Only host root in the initial user namespace makes them (the caller checks): the
namespace then belongs to that user namespace, as the one the supervisor made did, so the
container (whose capabilities are in a user namespace of its own) cannot change it.
"""

from __future__ import annotations

import os
import threading

from builder.errors import SandboxError
from builder.sandbox.syscalls import CLONE_NEWNET, loopback_up, unshare

_LOW_PORTS = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def open_low_ports() -> None:
    """Let the container's root bind ports below 1024 in the calling thread's network
    namespace, as Docker does: its capabilities are in its own user namespace, which the
    kernel's port check does not consult. /proc/sys/net shows the opener's namespace."""
    try:
        with open(_LOW_PORTS, "w", encoding="ascii") as f:
            f.write("0")
    except FileNotFoundError:
        pass  # a kernel before 4.11: no such knob, low ports stay closed


def make_none() -> int:
    """A new network namespace with lo up and low ports open, as an fd (close-on-exec).
    Call it in a thread that ends next: the thread is left in the namespace."""
    unshare(CLONE_NEWNET)
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # A second lock on the door: never the host's sysctl (the process's own namespace).
        if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise SandboxError("sandbox: no network namespace of its own was made")
        loopback_up()
        open_low_ports()
    except BaseException:
        os.close(fd)
        raise
    return fd


class Spare:
    """Hands out fresh `none` namespaces, each made ahead, by a thread, while the one
    handed out before is in use (stages that build at once take them in turn)."""

    def __init__(self) -> None:
        self._taking = threading.Lock()
        self._state = threading.Lock()  # _made, _error and _closed, between the threads
        self._thread: threading.Thread | None = None
        self._made: int | None = None
        self._error: BaseException | None = None
        self._closed = False

    def take(self) -> int:
        """An fd of a namespace no sandbox has joined (the caller closes it)."""
        with self._taking:
            if self._thread is None:
                self._begin()
            assert self._thread is not None
            self._thread.join()
            with self._state:
                fd, error = self._made, self._error
                self._made = self._error = None
            self._begin()
            if error is not None:
                raise error
            assert fd is not None
            return fd

    def _begin(self) -> None:
        self._thread = threading.Thread(target=self._make, name="netns", daemon=True)
        self._thread.start()

    def _make(self) -> None:
        try:
            fd = make_none()
        except BaseException as err:  # raised to the taker, on its thread
            with self._state:
                self._error = err
            return
        with self._state:
            if self._closed:  # nobody will take it
                os.close(fd)
            else:
                self._made = fd

    def close(self) -> None:
        """Drop the namespace made ahead and not taken, now or (if it is still being
        made: a build's end does not wait for it) once it is. Idempotent."""
        with self._state:
            self._closed = True
            if self._made is not None:
                os.close(self._made)
                self._made = None
