"""The private network's helper: slirp4netns, a user-mode TCP/IP stack in the host's network
namespace that gives the container's namespace a tap device with outbound access, a DNS
forwarder and port forwarding, without touching the host's network configuration.

It starts once the container's network namespace exists and is ready in about 10 ms; the
container's process waits for it (the caller opens a gate). It can never outlive us: it
exits when the write end of its --exit-fd pipe closes, which the kernel does when we die,
however we die; and `stop` kills and reaps it. Its exit takes 15-20 ms after the kill (the
kernel unregisters its tap device), a fifth of a small RUN step: within `reaping_into`, a
build's RUN steps do not wait for it, a later step reaps it once it has exited, and the
build reaps what is left (`settle`) before it returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Final

from builder.errors import SandboxError
from builder.sandbox.publish import PortMapping

EXECUTABLE: Final = "slirp4netns"
PACKAGE: Final = "slirp4netns"  # the Debian package that has it
INTERFACE: Final = "eth0"  # docker's name for the container's interface
GUEST_ADDRESS: Final = "10.0.2.100"  # what --configure gives the interface
DNS_FORWARDER: Final = "10.0.2.3"
MTU: Final = 65520  # the largest slirp4netns takes: the fewest packets through user space
READY_TIMEOUT: Final = 10.0


def find() -> str:
    """The helper's path, or the error that says which package to install."""
    path = shutil.which(EXECUTABLE)
    if path is None:
        raise SandboxError(
            f"the default network needs {EXECUTABLE}, which is not installed: install the"
            f" Debian package {PACKAGE} (apt-get install {PACKAGE}), or use --network none"
        )
    return path


class Slirp:
    """A running slirp4netns for the network namespace of one process."""

    def __init__(self, pid: int, exit_w: int, ready_r: int, log: int, api: str | None) -> None:
        self.pid: int | None = pid
        self._exit_w = exit_w
        self._ready_r = ready_r
        self._log = log
        self._api = api

    @classmethod
    def start(cls, executable: str, target_pid: int, api_socket: str | None = None) -> Slirp:
        """Start it for TARGET_PID's network namespace (and, rootless, its user namespace:
        slirp4netns joins the target's to configure the interface)."""
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        # Its messages, read only to explain a failure; unnamed, so nothing to clean up.
        log = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        argv = [
            executable,
            "--configure",
            f"--mtu={MTU}",
            "--disable-host-loopback",  # the host's 127.0.0.1 services stay out of reach
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
            *(["--api-socket", api_socket] if api_socket else []),
            str(target_pid),
            INTERFACE,
        ]
        try:
            pid = _spawn(argv, keep=(ready_w, exit_r), stderr=log)
        except OSError as err:
            for fd in (ready_r, exit_w, log):
                os.close(fd)
            raise SandboxError(f"network: cannot start {executable}: {err.strerror}") from None
        finally:
            os.close(ready_w)
            os.close(exit_r)
        return cls(pid, exit_w, ready_r, log, api_socket)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError(f"network: {EXECUTABLE} was not ready after {timeout:.0f}s")
            ready, _, _ = select.select([self._ready_r], [], [], left)
            if ready:
                data = os.read(self._ready_r, 16)
                break
        if data != b"1":
            raise SandboxError(f"network: {EXECUTABLE} failed: {self._message()}")

    def publish(self, mapping: PortMapping) -> None:
        """Forward the host's HOST_IP:HOST_PORT to the container's port (add_hostfwd)."""
        if self._api is None:
            raise SandboxError("network: ports are published through the API socket")
        request: dict[str, object] = {
            "execute": "add_hostfwd",
            "arguments": {
                "proto": mapping.protocol,
                "host_addr": mapping.host_ip,
                "host_port": mapping.host_port,
                "guest_addr": GUEST_ADDRESS,
                "guest_port": mapping.container_port,
            },
        }
        reply = self._call(request)
        if "error" in reply:
            raise SandboxError(f"-p {mapping}: {_why_not(mapping, reply['error'])}")

    def _call(self, request: dict[str, object]) -> dict[str, object]:
        # One request per connection; the server answers after our SHUT_WR.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(READY_TIMEOUT)
            try:
                sock.connect(str(self._api))
                sock.sendall(json.dumps(request).encode())
                sock.shutdown(socket.SHUT_WR)
                raw = b""
                while chunk := sock.recv(4096):
                    raw += chunk
            except OSError as err:
                raise SandboxError(f"network: {EXECUTABLE}'s API: {err.strerror or err}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise SandboxError(f"network: {EXECUTABLE}'s API answered {raw[:200]!r}") from None
        return reply if isinstance(reply, dict) else {"error": reply}

    def _message(self) -> str:
        self._reap(block=True)
        try:
            text = os.pread(self._log, 65536, 0).decode(errors="replace")
        except OSError:
            text = ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        message = "; ".join(lines[-3:]) or "it exited before its network was ready"
        if "/dev/net/tun" in text and "Permission denied" in text:  # rootless, in its userns
            message += (
                " (without root, /dev/net/tun must be open to all users, mode 0666 as"
                " Debian ships it; or use --network none)"
            )
        return message

    def stop(self) -> None:
        """Kill and reap it (within `reaping_into`, later), and close our ends. Idempotent."""
        with contextlib.suppress(OSError):
            os.close(self._exit_w)  # alone, this makes it exit too; we do not wait for that
        self._exit_w = -1
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            pending: list[int] | None = getattr(_local, "pending", None)
            if pending is None:
                self._reap(block=True)
            else:  # no thread: starting one cost more than a ms on a busy machine
                with _pending_lock:  # stages built at once share the list
                    _reap_exited(pending)  # earlier steps', dead by now: no zombie piles up
                    pending.append(self.pid)
                self.pid = None
        for fd in (self._ready_r, self._log):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._ready_r = self._log = -1

    def _reap(self, *, block: bool) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if not done:
                return
        self.pid = None


_local = threading.local()  # .pending: the killed helpers this thread's caller reaps later
_pending_lock = threading.Lock()


@contextlib.contextmanager
def reaping_into(pending: list[int]) -> Iterator[None]:
    """Within (in this thread): a stopped helper is killed and not waited for; its pid goes
    to `pending`, reaped by a later stop once it has exited, or by `settle`, which the
    caller calls before it reports it is done."""
    before = getattr(_local, "pending", None)
    _local.pending = pending
    try:
        yield
    finally:
        _local.pending = before


def settle(pending: list[int]) -> None:
    """Wait until every helper in `pending` has been reaped."""
    with _pending_lock:
        while pending:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pending.pop(), 0)


def _reap_exited(pending: list[int]) -> None:
    for pid in list(pending):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            pending.remove(pid)


def _spawn(argv: list[str], keep: tuple[int, ...], stderr: int) -> int:
    """posix_spawn ARGV with stdin/stdout on /dev/null, stderr on STDERR, and only the fds
    KEEP besides: an fd some caller left inheritable (a RUN's output pipe) must not stay
    open in a process that outlives the step's own. (subprocess would do the same but
    costs more to import than the helper takes to start.)"""
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep and _inheritable(fd):
            actions.append((os.POSIX_SPAWN_CLOSE, fd))
    for fd in keep:
        os.set_inheritable(fd, True)
    return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setpgroup=0)


def _inheritable(fd: int) -> bool:
    try:
        return os.get_inheritable(fd)
    except OSError:  # the listing's own fd, closed by now
        return False


def _why_not(mapping: PortMapping, error: object) -> str:
    """slirp4netns says only that add_hostfwd failed: ask the kernel why, with a bind."""
    kind = socket.SOCK_DGRAM if mapping.protocol == "udp" else socket.SOCK_STREAM
    try:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((mapping.host_ip, mapping.host_port))
    except OSError as err:
        return f"cannot listen on {mapping.host_ip}:{mapping.host_port}: {err.strerror}"
    desc = error.get("desc", error) if isinstance(error, dict) else error
    return f"{EXECUTABLE} refused to forward the port: {desc}"
