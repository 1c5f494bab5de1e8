"""The last steps of the container's pid 1, inside the new root: who it runs as, where, with
which environment and stdio, and then exec (or, for `call`, a Python callable).

Everything here runs in a forked child and ends in os._exit: it never returns to the caller.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: no enum per call
import contextlib
import errno
import fcntl
import os
import signal
import sys
import termios
from collections.abc import Callable, Sequence

from builder.errors import SandboxError
from builder.sandbox import syscalls
from builder.sandbox.spec import DEVNULL, ProcessStartError, SandboxSpec
from builder.sandbox.users import Credentials

# Python ignores these at start-up and ignored signals survive exec: a build's `yes | head`
# would then see EPIPE instead of dying quietly (subprocess restores them too).
_RESTORED = tuple(
    getattr(signal, name)
    for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ", "SIGINT", "SIGTERM", "SIGHUP")
    if hasattr(signal, name)
)
# glibc's own (SIGCANCEL, SIGSETXID): neither its sigaction nor Python can reset them.
_LIBC_SIGNALS = (32, 33)
_MAX_FD = 0x7FFFFFFF


def environment(spec: SandboxSpec, creds: Credentials) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in spec.env:
        key, _, value = item.partition("=")
        env[key] = value
    # The image's default PATH is its callers' business (they always pass one); without
    # one, the POSIX default, as execvp and a shell would use.
    env.setdefault("PATH", os.defpath)
    env.setdefault("HOME", creds.home)
    return env


def make_cwd(cwd: str) -> None:
    """mkdir -p the working directory as root, like runc/docker (it lands in the layer)."""
    try:
        os.makedirs(cwd, mode=0o755, exist_ok=True)
    except OSError as err:
        raise ProcessStartError(f"working directory {cwd}: {err.strerror}") from None


def become(creds: Credentials, cwd: str) -> None:
    try:
        if _may_setgroups():
            os.setgroups(list(creds.groups))
        os.setgid(creds.gid)
        os.setuid(creds.uid)
    except OSError as err:
        raise SandboxError(
            f"switch to user {creds.uid}:{creds.gid}: {err.strerror}"
            + (" (only uid 0 is mapped when not run as root)" if os.geteuid() != 0 else "")
        ) from None
    try:
        os.chdir(cwd)
    except OSError as err:
        raise ProcessStartError(f"working directory {cwd}: {err.strerror}") from None


def _may_setgroups() -> bool:
    """False in a user namespace made with a single-id map (setgroups denied, as the
    kernel requires there): the process keeps the groups it has."""
    try:
        with open("/proc/self/setgroups", encoding="ascii") as f:
            return f.read().strip() != "deny"
    except FileNotFoundError:
        return True


def stdio(spec: SandboxSpec) -> None:
    """dup2 the spec's fds onto 0/1/2 (via copies, so that swapping 1 and 2 works)."""
    wanted = (spec.stdin, spec.stdout, spec.stderr)
    copies: list[int | None] = []
    for i, fd in enumerate(wanted):
        if fd is None:
            copies.append(None)
        elif fd == DEVNULL:
            copies.append(
                os.open("/dev/null", (os.O_RDONLY if i == 0 else os.O_WRONLY) | os.O_CLOEXEC)
            )
        else:
            try:
                copies.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3))
            except OSError as err:
                raise SandboxError(f"stdio fd {fd}: {err.strerror}") from None
    for target, fd in enumerate(copies):
        if fd is not None:
            os.dup2(fd, target)  # dup2 leaves the target inheritable
            os.close(fd)


def close_fds(keep: Sequence[int], *, first: int = 3) -> None:
    """Close every fd from `first` on (above stdio by default) except `keep` (close_range
    under the hood)."""
    kept = sorted({first - 1, *(fd for fd in keep if fd >= first)})
    for low, high in zip(kept, [*kept[1:], _MAX_FD], strict=True):
        if high > low + 1:
            os.closerange(low + 1, high)


def restore_signals(blocked: Sequence[int] = ()) -> None:
    """Every signal pid 1 may hold back to its default, and an empty signal mask (as runc
    gives a container: a signal the caller had blocked, e.g. a CI runner's, must not reach
    the container): ignored signals and the mask survive exec. Python ignores SIGPIPE and SIGXFSZ at
    start-up; the caller may have inherited more; the supervisor blocked `blocked` (one
    syscall, where ignoring them took one each). One of those sent to pid 1 meanwhile is
    dropped, as when they were ignored: setting SIG_IGN discards a pending signal. Only
    a signal not at its default (Python's view, which it reads from the kernel at start)
    costs a call."""
    # The C module's calls: signal's wrappers make an enum of each signal in the sets they
    # return, ~0.3 ms (more in a fresh fork) for the ~50 that `run` blocked.
    pending = _signal.sigpending()
    for sig in {*_RESTORED, *blocked}:
        if sig in pending:
            _signal.signal(sig, _signal.SIG_IGN)
        elif _signal.getsignal(sig) == _signal.SIG_DFL:
            continue
        _signal.signal(sig, _signal.SIG_DFL)
    for sig in _LIBC_SIGNALS:  # out of Python's reach, and maybe ignored by our caller
        syscalls.default_libc_signal(sig)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def exec_command(
    argv: Sequence[str], env: dict[str, str], style: str = "builder", report: int = -1
) -> int:
    """execve argv[0] looked up in the env's PATH; returns (never raising) like sh when
    nothing could be run: 127 not found, 126 found but not executable. `style` "docker"
    words the message as `docker run` does, as one `error:` line. With a `report` fd (the
    caller's close-on-exec exec pipe), a failure writes "CODE MESSAGE" there: with "docker"
    the message goes there only, for the caller to report as docker's CLI does."""
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        candidates = [f"{d or '.'}/{name}" for d in env.get("PATH", os.defpath).split(":")]
    denied: OSError | None = None
    other: OSError | None = None
    for path in candidates:
        try:
            os.execve(path, list(argv), env)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                denied = denied or err
            elif err.errno not in (errno.ENOENT, errno.ENOTDIR):
                other = other or err
    if style == "docker":
        code, message = _docker_exec_error(name, denied or other)
    else:
        code, message = _builder_exec_error(name, denied, other)
    if report >= 0:
        with contextlib.suppress(OSError):
            os.write(report, f"{code} {message}".encode(errors="replace"))
    if style != "docker":
        _say(message + "\n")
    elif report < 0:
        _say(f"error: {message}\n")
    return code


def _builder_exec_error(
    name: str, denied: OSError | None, other: OSError | None
) -> tuple[int, str]:
    if denied is not None:
        return 126, f"builder: {name}: {denied.strerror}"
    if other is not None:
        return 126 if other.errno == errno.ENOEXEC else 127, f"builder: {name}: {other.strerror}"
    return 127, f"builder: {name}: command not found"


def _docker_exec_error(name: str, err: OSError | None) -> tuple[int, str]:
    if err is None:
        where = (
            "executable file not found in $PATH" if "/" not in name else "no such file or directory"
        )
        return 127, f'exec: "{name}": {where}'
    code = 126 if err.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC) else 127
    return code, f'exec: "{name}": {(err.strerror or str(err)).lower()}'


def controlling_tty() -> None:
    """Make stdin (a pty's slave) our controlling terminal, in a session of our own, so the
    shell gets job control and ^C, and a window-size change reaches us as SIGWINCH."""
    try:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError as err:
        raise SandboxError(f"controlling terminal: {err.strerror}") from None


def run_callable(fn: Callable[[], int]) -> int:
    try:
        status = int(fn())
    except BaseException as err:  # the child must end in _exit whatever happens
        _say(f"builder: {type(err).__name__}: {err}\n")
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    return status & 0xFF


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="replace"))
