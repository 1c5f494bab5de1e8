"""The server's child becomes the client's CLI (the zygote's fork; see builder/cli/server.py).

A forked child of the warm server is a copy of the server: its session, cgroups, limits,
signal dispositions and mask, umask, cwd, stdio, environment and argv are the server's. Here
it takes the client's instead, each read from /proc/<client pid> by the server or sent by
the client, so that it behaves as `builder ARGS` started by the client would have:

- a session of its own (not the server's; the client's terminal stays the client's, which
  forwards signals, so a tty's ^C still reaches the command), and death with the server
  (PR_SET_PDEATHSIG: a server killed mid-build takes its children, the client reports it);
- the client's cgroups, v1 and v2, so a CI job's limits and accounting still apply
  (a cgroup that cannot be joined, e.g. a user's in a root-owned hierarchy, is left);
- the client's rlimits and umask; its signal dispositions (what it ignores stays ignored,
  SIGINT raises KeyboardInterrupt as Python makes it do) and its signal mask;
- its stdin/stdout/stderr (the very fds: ttys, pipes and files behave as they did), its
  cwd (an O_PATH fd, so any path works), its environment, argv, and the std streams re-made
  with its encodings and buffering;
- state computed from the environment before the fork is dropped: tempfile's directory.
  (random reseeds itself in a forked child, os.register_at_fork.)
Then it runs the CLI and ends with os._exit: nothing of it returns into the server's loop.
Its exit status goes to the client from the child itself, once every fd but the client's
connection is closed (its locks released, its output flushed and closed): the exit of a
copy of the server's whole heap and the server's wait for it took ~3-4 ms more.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import marshal
import os
import signal
import socket
import sys
import traceback
from collections.abc import Sequence

from builder.cli import main as cli_module
from builder.cli.client import unpack_fds
from builder.cli.main import _exit_now
from builder.cli.main import main as cli_main
from builder.sandbox import launcher
from builder.sandbox.syscalls import set_pdeathsig

# (encoding, errors, line_buffering, write_through) of one of the client's std streams.
StreamState = tuple[str, str, bool, bool] | None


class Adopted:
    """What the child takes from the client (read by the server before it forks)."""

    def __init__(
        self,
        *,
        argv: list[str],
        env: dict[bytes, bytes],
        streams: Sequence[StreamState],
        fds: Sequence[int],  # stdin, stdout, stderr, cwd
        reply: int,  # the client's connection (in the child: the server's fd of it)
        umask: int,
        rlimits: dict[int, tuple[int, int]],
        blocked: set[int],
        ignored: set[int],
        python_handled: set[int],
        cgroup_procs: list[str],
    ) -> None:
        self.argv = argv
        self.env = env
        self.streams = streams
        self.fds = fds
        self.reply = reply
        self.umask = umask
        self.rlimits = rlimits
        self.blocked = blocked
        self.ignored = ignored
        self.python_handled = python_handled
        self.cgroup_procs = cgroup_procs

    def to_wire(self) -> tuple[bytes, list[int]]:
        """For a spare child (below): the message, and the fds to send with it."""
        state = (
            self.argv,
            self.env,
            tuple(self.streams),
            self.umask,
            self.rlimits,
            self.blocked,
            self.ignored,
            self.python_handled,
            self.cgroup_procs,
        )
        return marshal.dumps(state), [*self.fds, self.reply]

    @classmethod
    def from_wire(cls, data: bytes, fds: list[int]) -> Adopted:
        argv, env, streams, umask, rlimits, blocked, ignored, handled, procs = marshal.loads(data)
        return cls(
            argv=argv,
            env=env,
            streams=streams,
            fds=fds[:4],
            reply=fds[4],
            umask=umask,
            rlimits=rlimits,
            blocked=blocked,
            ignored=ignored,
            python_handled=handled,
            cgroup_procs=procs,
        )


def become(adopted: Adopted, server_pid: int) -> None:
    """In a child forked for this call: become the client's CLI, run it, never return."""
    status = 1
    try:
        _detach(server_pid)
        status = _serve(adopted)
    except BaseException:  # a child must not unwind into the server's loop
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(status)


def wait_as_spare(sock: socket.socket, server_pid: int) -> None:
    """In a child forked ahead of the next call: detach, take our own copy of the pages a
    call writes (a full collection writes the header of every object: ~3,000 pages copied
    now, not one page fault at a time during the call: a cached build ran in 12-15 ms
    instead of 22-27), say we are ready, and wait for the call (the server's fork was paid
    for ahead too). The server closing the socket retires us."""
    status = 0
    try:
        signal.set_wakeup_fd(-1)  # the server's pipe: closed next
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the server's handlers:
            signal.signal(sig, signal.SIG_DFL)  # a service manager's TERM ends a spare too
        _close_all_but(3, sock.fileno())
        _detach(server_pid)
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        sock.send(b"ready")
        # CLOEXEC, as the server's own fd of the connection is: what the CLI starts must not
        # hold it (stdin/stdout/stderr are dup2'ed onto 0-2, which clears the flag there).
        data, ancillary, _, _ = sock.recvmsg(
            1 << 20, socket.CMSG_SPACE(4 * 5), socket.MSG_CMSG_CLOEXEC
        )
        if not data:
            return
        fds = [fd for _, _, raw in ancillary for fd in unpack_fds(raw)]
        status = 1
        status = _serve(Adopted.from_wire(data, fds))
    except BaseException:  # a child must not unwind into the server's loop
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(status)


def _detach(server_pid: int) -> None:
    """Our own session, and death with the server (see the module header)."""
    os.setsid()
    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != server_pid:  # the server died before the line above
        os._exit(125)


def _serve(adopted: Adopted) -> int:
    _take_process_state(adopted)
    _take_io(adopted)
    return _run_cli()


def _take_process_state(adopted: Adopted) -> None:
    from builder.sandbox.cgroups import move_here  # (loaded: the server imports it)

    for procs in adopted.cgroup_procs:
        # Not ours to join (a user in root's hierarchy): see the module header.
        with contextlib.suppress(OSError):
            move_here([os.path.dirname(procs)])
    import resource

    for which, limits in adopted.rlimits.items():
        resource.setrlimit(which, limits)
    os.umask(adopted.umask)
    signal.set_wakeup_fd(-1)
    for sig in range(1, signal.NSIG):  # not valid_signals(): an enum each, ~4 ms in all
        if sig in (signal.SIGKILL, signal.SIGSTOP, 32, 33):  # 32, 33: glibc's own
            continue
        if sig in adopted.ignored:
            handler: signal.Handlers | object = signal.SIG_IGN
        elif sig == signal.SIGINT and sig in adopted.python_handled:
            handler = signal.default_int_handler
        else:
            handler = signal.SIG_DFL
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, handler)  # type: ignore[arg-type]
    signal.pthread_sigmask(signal.SIG_SETMASK, adopted.blocked)


def _take_io(adopted: Adopted) -> None:
    stdin, stdout, stderr, cwd = adopted.fds
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    os.fchdir(cwd)
    # The server's sockets, pidfds, lock; not the client's connection (CLOEXEC: no process
    # the CLI starts inherits it).
    _close_all_but(3, adopted.reply)
    cli_module.before_exit = lambda status: _report(adopted.reply, status)
    launcher.take_environment(adopted.env)
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # type: ignore[attr-defined]  # computed again from this environment's $TMPDIR
    sys.argv = list(adopted.argv)
    made = [
        _stream(fd, mode, state)
        for fd, mode, state in zip((0, 1, 2), "rww", adopted.streams, strict=True)
    ]
    sys.stdin, sys.stdout, sys.stderr = made
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = made  # type: ignore[misc]


def _close_all_but(first: int, kept: int) -> None:
    """Close fds from `first` on but `kept` and, when above stdio, the server's sandbox
    launcher's (sandbox/launcher.py: the call's sandboxes are forked by it)."""
    keep = sorted({kept, *(launcher.kept_fds() if first > 0 else ())})
    for low, high in zip([first - 1, *keep], [*keep, os.sysconf("SC_OPEN_MAX")], strict=True):
        os.closerange(low + 1, high)


def _report(reply: int, status: int) -> None:
    """Tell the client our exit status now (the server would, once it has reaped us): every
    other fd closed first, so that no lock, pipe end or file of ours outlives the client's
    exit. The server's own report after the reap then goes nowhere."""
    _close_all_but(0, reply)
    with contextlib.suppress(OSError):
        os.write(reply, marshal.dumps(("exit", "code", status)))  # one SOCK_SEQPACKET record


def _stream(fd: int, mode: str, state: StreamState) -> io.TextIOWrapper:
    """A std stream as the interpreter makes it (pylifecycle.c create_stdio): buffered
    binary over the fd, text with newline "\\n", the client's encoding and buffering."""
    encoding, errors, line_buffering, write_through = state or ("utf-8", "strict", False, False)
    binary = open(fd, mode + "b", closefd=False)  # noqa: SIM115 - the stream lives on
    stream = io.TextIOWrapper(
        binary,
        encoding=encoding,
        errors=errors,
        newline="\n",
        line_buffering=line_buffering,
        write_through=write_through,
    )
    stream.mode = mode  # type: ignore[misc]
    return stream


def _run_cli() -> int:
    """The console script's main; its os._exit ends us, unless threads are alive (then it
    raises SystemExit, and we do what the interpreter's exit would: join them, run the
    atexit handlers)."""
    try:
        cli_main()
    except SystemExit as done:
        code = done.code
    threading = sys.modules.get("threading")
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    _exit_now(code)
