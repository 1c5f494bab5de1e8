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

from builder.errors import SandboxError
from builder.sandbox.ahead import Ahead
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


class Spare(Ahead[int]):
    """Hands out fresh `none` namespaces, each made ahead, by a thread, while the one
    handed out before is in use (stages that build at once take them in turn)."""

    def __init__(self) -> None:
        super().__init__(make_none, os.close, "netns")
