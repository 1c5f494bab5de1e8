"""A small Python that forks sandbox supervisors, so that they are not forks of the caller.

Every sandbox was two forks of the caller (a warm server or a one-shot CLI with the engine,
registry and CLI imported: ~30 MB): the supervisor, and pid 1 forked by it. Each fork and
the copy-on-write faults that follow it cost in proportion to the caller's memory: a fork
whose child touches a few objects and exits took 8.8 ms there, 2.1 ms from a bare
interpreter, and that was most of a sandbox's CPU (issue 9). A launcher is an interpreter
(`python -I -S`) that imports the sandbox's modules only, spawned once (posix_spawn: a vfork
for the caller) by a warm server, whose calls share it. (A one-shot CLI spawns none: its
~0.1 s of CPU to start cost a 16-step build more than its forks saved.) A sandbox's plan goes to it
pickled, with the fds the plan names (SCM_RIGHTS), and it forks the supervisor, which puts
those fds at the numbers the caller had them (their close-on-exec flags too), takes the
caller's umask, cwd, environment, rlimits and cgroups, and runs the same code a fork of the
caller would (process._supervise).

What the caller keeps, as with a fork of its own:
- the report pipe, the exec pipe, the handoff pipe, `P`/`X`/`C`: the same fds, the same code;
- the supervisor's pid (the launcher answers it first) and its wait status (the launcher
  reaps it and answers that too, on the request's own socket);
- death with the caller: the request's socket is the supervisor's too; when the caller's
  end closes (it died) the supervisor kills pid 1 (process._wait_pid1), and pid 1 dies
  with the supervisor as before (PR_SET_PDEATHSIG);
- the launcher ends once every caller process has closed its end of its socket.

Once idle (no sandbox running, no request for 20 ms) the launcher forks one supervisor ahead
(a spare, as the warm server keeps a spare child), which copies its pages and says so: the
next request then costs no fork and ~900 fewer page faults before the supervisor's first
unshare. A request that comes sooner is forked as before: it never waits for a spare. A
build's steps leave the launcher no such idle time (it reaps a step's supervisor as the
engine prepares the next request, ~13 ms later), so a caller that expects another sandbox
soon asks for the spare as its sandbox ends (`Launcher.ahead`, sandbox.run's `ahead`): its
start-up then overlaps the engine's work between the steps, on the other core. (Asked for
once the command ran, it started sooner but competed with the command and the sandbox's
end: a step's start was 3.7 ms shorter but its whole run 0.7 ms longer, measured.) `run`'s
start is never asked ahead: its caller waits for nothing but its own sandbox.

Anything that cannot be pickled (a `call`'s function, the COPY writers) or a launcher that
is not ready yet: the caller forks, as before (process.py). Not when rootless either: the
id-map handshake is made for a forked child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import socket
import struct
import sys
import threading
from typing import TYPE_CHECKING, Any

from builder.sandbox.handoff import Handoff

if TYPE_CHECKING:
    from builder.sandbox.process import Pid1Ahead

# A plan's pickle with its secrets' bytes, at most; bigger ones are forked as before.
_MAX_MESSAGE = 1 << 20
_MAX_FDS = 32
_STATUS = struct.Struct("=q")
# A request's first bytes: its sandbox's shape (process.shape: the namespaces a spare may
# make and the pid 1 it may fork before the request), or NO_SHAPE.
_SHAPE = struct.Struct("=q")
NO_SHAPE = -1
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_FD_LIMIT = 0x7FFFFFFF
# Seconds without a request or a sandbox running before the launcher forks its spare.
_SPARE_AFTER = 0.02
# A message with no fds: a caller expects to send a request soon (a build's next RUN step).
_AHEAD = b"ahead"


class Launcher:
    """The caller's side: the launcher's socket, and a pipe whose EOF says it is ready."""

    def __init__(self, preload: tuple[str, ...] = (), *, wait: bool = False) -> None:
        """Spawn it; it runs as our grandchild (the child it forks at once, which our
        `wait` reaps now, or a later `ready` does), not among our children."""
        self.pid = 0  # the launcher's, once ready (the parent of the supervisors it forks)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        # Our sys.path, not site's (-S: its start-up work): what a pickle names, the
        # launcher imports as we would.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = [root, *(os.path.abspath(p) for p in sys.path)]
        code = (
            f"import sys; sys.path[:] = {path!r}; "
            "from builder.sandbox import launcher; launcher.serve()"
        )
        argv = [sys.executable, "-I", "-S", "-c", code, str(theirs.fileno()), str(ready_w)]
        argv += preload
        try:
            # posix_spawn keeps fds that are not close-on-exec: these two, made so here only.
            os.set_inheritable(theirs.fileno(), True)
            os.set_inheritable(ready_w, True)
            self._spawned = os.posix_spawn(sys.executable, argv, os.environ)
        finally:
            theirs.close()
            os.close(ready_w)
        self.sock = ours
        self.ready_r = ready_r
        self._ready = False
        if wait:
            self._reap(0)

    def _reap(self, flags: int) -> None:
        if self._spawned:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self._spawned, flags)[0] == 0:
                    return
            self._spawned = 0

    def ready(self) -> bool:
        """True once the launcher serves (never blocks; any process sharing it may ask)."""
        if not self._ready:
            ready, _, _ = select.select([self.ready_r], [], [], 0)
            if ready:
                said = os.read(self.ready_r, 16)  # its pid, to the first who asks; then EOF
                self.pid = int(said) if said else 0
                self._ready = True
            self._reap(os.WNOHANG)
        return self._ready

    def fds(self) -> tuple[int, int]:
        """What a process that forks and closes its fds keeps to go on using the launcher."""
        return self.sock.fileno(), self.ready_r

    def launch(
        self, plan: object, fds: dict[int, bool], context: Context, shape: int = NO_SHAPE
    ) -> Launched | None:
        """Fork a supervisor running `plan`, with `fds` (number: close-on-exec) where they
        are; None if the plan cannot go (the caller then forks it itself). `shape`: what a
        spare may have made for it ahead (process.shape)."""
        try:
            data = _SHAPE.pack(shape) + pickle.dumps((plan, tuple(fds.items()), context), _PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
        if len(data) > _MAX_MESSAGE or len(fds) + 1 > _MAX_FDS:
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.sock, [data], [theirs.fileno(), *fds])
        except OSError:
            mine.close()
            return None
        finally:
            theirs.close()
        said = mine.recv(_STATUS.size)
        if len(said) != _STATUS.size:  # the launcher has gone
            mine.close()
            return None
        return Launched(_STATUS.unpack(said)[0], mine)

    def ahead(self, shape: int = NO_SHAPE) -> None:
        """Have a supervisor forked now for a request we expect soon: a build's next RUN
        step, asked for as this step's sandbox ends (its start-up then overlaps the
        engine's work between the steps, which leave the launcher no 20 ms of idle)."""
        with contextlib.suppress(OSError):
            self.sock.send(_AHEAD + _SHAPE.pack(shape))


class Context:
    """The caller's process state that a fork would have given the supervisor."""

    def __init__(self) -> None:
        import resource

        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.cwd = os.getcwd()
        self.environ = dict(os.environb)
        self.rlimits = {r: resource.getrlimit(r) for r in _rlimits(resource)}
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            self.cgroups = f.read()

    def adopt(self) -> None:
        """In the supervisor: become like the caller."""
        import resource

        os.umask(self.umask)
        with contextlib.suppress(OSError):
            os.chdir(self.cwd)
        take_environment(self.environ)
        for which, limits in self.rlimits.items():
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(which, limits)
        from builder.sandbox import cgroups

        with open("/proc/self/cgroup", encoding="utf-8") as f:
            ours = f.read()
        for procs in cgroups.procs_files(self.cgroups, ours):
            # Best effort, as the warm server's child: a cgroup we may not join is left.
            with contextlib.suppress(OSError):
                cgroups.move_here([os.path.dirname(procs)])


def take_environment(wanted: dict[bytes, bytes]) -> None:
    """Make this process's environment `wanted`, touching only the variables that differ:
    clear() and update() unset and set every one, ~1.1 ms for 35 in a fresh fork (a
    launched supervisor, the warm server's child), where the caller's environment is
    mostly the one we have."""
    current = os.environb
    for key in [key for key in current if key not in wanted]:
        del current[key]
    for key, value in wanted.items():
        if current.get(key) != value:
            current[key] = value


def _rlimits(resource: Any) -> list[int]:
    return sorted({getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")})


class Launched:
    """A supervisor the launcher forked: its pid, and its wait status when it has one."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self._status: int | None = None
        self.said = False  # its status ("C"): it has not exited, a handoff waits for us

    def status(self) -> int:
        """Its wait status (blocks until the launcher reaped it); SIGKILL's if it is lost."""
        if self._status is None:
            said = b""
            with contextlib.suppress(OSError):
                said = self.sock.recv(_STATUS.size)
            self.sock.close()
            self._status = _STATUS.unpack(said)[0] if len(said) == _STATUS.size else 9
        return self._status

    def close(self) -> None:
        self.sock.close()


def deferred(handoff: Handoff) -> Handoff | None:
    """The supervisor's part of a handoff as the launcher's fork can take it: its removal
    pickled now and unpickled only when it runs, after the supervisor said its status (the
    modules it needs load off the caller's path, if the launcher has not loaded them)."""
    try:
        return Handoff(_nothing_to_move, _Deferred(pickle.dumps(handoff.remove, _PROTOCOL)))
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def _nothing_to_move(_supervisor: int) -> bool:  # the caller keeps its own `move`
    return False


class _Deferred:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self) -> object:
        return pickle.loads(self.data)()


_CURRENT: Launcher | None = None
_BEGINNING = threading.Lock()


def begin(preload: tuple[str, ...] = (), *, wait: bool = False) -> None:
    """Spawn this process's launcher, unless there is one (started early: it is ready
    about 0.1 s later, and its start runs on another core meanwhile). `preload`: modules
    it imports ahead, those of the handoffs its forks will run (their import would cost
    each fork ~20 ms, off the caller's path but not off the machine's). `wait`: for its
    first process, which forks it and exits (tens of ms: a server's start)."""
    global _CURRENT
    with _BEGINNING:  # (stages' threads: one launcher)
        if _CURRENT is None and os.geteuid() == 0:
            with contextlib.suppress(OSError):
                _CURRENT = Launcher(preload, wait=wait)


def kept_fds() -> tuple[int, ...]:
    """The fds of this process's launcher, which a fork that closes its fds keeps."""
    return () if _CURRENT is None else _CURRENT.fds()


def current() -> Launcher | None:
    """This process's launcher, if it is ready to serve."""
    return _CURRENT if _CURRENT is not None and _CURRENT.ready() else None


# ---- the launcher -------------------------------------------------------------------------


def serve() -> None:
    """The launcher's main: import what a supervisor runs, say ready, fork on request."""
    if os.fork() != 0:  # not among our spawner's children (a server counts them)
        os._exit(0)
    os.chdir("/")  # a long-lived process must not keep a directory busy (its forks take
    # their caller's)
    # What a fork would import each time: pid 1's files opened "ascii", the rlimits of
    # the caller's context.
    import encodings.ascii  # noqa: F401
    import gc
    import importlib
    import resource  # noqa: F401

    from builder.sandbox import process  # noqa: F401 - imported once, here, for every fork

    for name in sys.argv[3:]:
        with contextlib.suppress(ImportError):  # then each fork that needs it imports it
            importlib.import_module(name)
    from builder import record

    # Each record class's __init__ is compiled on its first use (record.py): ~0.3-1 ms
    # each in a fresh fork, where the supervisor and pid 1 made 7 of them for every
    # sandbox (its plan, stubs, id-map handshake, /etc files, passwd and group entries).
    for name, module in list(sys.modules.items()):
        if name.startswith("builder."):
            record.compile_classes(module)
    from builder.sandbox.syscalls import resolve_ahead

    resolve_ahead()  # libc and its functions, which each fork would look up again

    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    gc.collect()
    gc.freeze()  # a fork's collections must not write to every object's header
    ready_w = int(sys.argv[2])
    with contextlib.suppress(OSError):
        os.write(ready_w, str(os.getpid()).encode())
    os.close(ready_w)
    children: dict[int, tuple[int, int]] = {}  # pidfd -> pid, the request's socket
    spare: _Spare | None = None
    shape = NO_SHAPE  # the last request's: the idle spare's
    dropped: list[int] = []  # spares of another shape, told to end: reaped when they have
    while True:
        dropped = [pid for pid in dropped if not _reaped(pid)]
        # The spare is forked once we have been idle a while: not while a sandbox runs nor
        # between a build's steps, where its start-up would take CPU from their work.
        idle = _SPARE_AFTER if spare is None else None
        ready, _, _ = select.select([sock.fileno(), *children], [], [], idle)
        if not ready:
            if not children:
                spare = _Spare.fork([sock.fileno()], shape, idle=True)
            continue
        for pidfd in ready:
            if pidfd in children:
                pid, reply = children.pop(pidfd)
                status = os.waitpid(pid, 0)[1]
                with contextlib.suppress(OSError):
                    os.write(reply, _STATUS.pack(status))
                os.close(reply)
                os.close(pidfd)
        if sock.fileno() not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, _MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, fds = b"", []
        if not data and not fds:
            return  # every caller has gone (a spare ends when its socket closes with us)
        if not fds:
            if data[: len(_AHEAD)] == _AHEAD:  # asked for while a sandbox runs
                shape = _SHAPE.unpack_from(data, len(_AHEAD))[0]
                if spare is not None and spare.shape not in (shape, NO_SHAPE):
                    dropped.append(spare.drop())
                    spare = None
                if spare is None:
                    spare = _Spare.fork(_ours(sock, children), shape, idle=False)
            continue
        shape = _SHAPE.unpack_from(data)[0]
        if spare is not None and spare.shape not in (shape, NO_SHAPE):
            dropped.append(spare.drop())  # what it made ahead is not this sandbox's
            spare = None
        if spare is not None and spare.ready() and spare.hand(data, fds):
            pid, spare = spare.pid, None
        else:  # none, or one still copying its pages: kept for the next request
            if spare is not None and spare.gone:
                spare.close()
                spare = None
            pid = os.fork()
            if pid == 0:
                launcher_fds = _ours(sock, children)
                if spare is not None:
                    launcher_fds.append(spare.sock.fileno())
                _supervisor(data, fds, launcher_fds)
        for fd in fds[1:]:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.write(fds[0], _STATUS.pack(pid))
        children[os.pidfd_open(pid)] = (pid, fds[0])


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _ours(sock: socket.socket, children: dict[int, tuple[int, int]]) -> list[int]:
    """The launcher's fds that a fork of it closes: its socket, each child's pidfd and
    reply socket."""
    return [sock.fileno(), *children, *(reply for _, reply in children.values())]


class _Spare:
    """A supervisor forked ahead of the next request, as the warm server forks its spare
    child: the fork, and the copy of the pages that its collections and a supervisor's
    work write (~1,100 page faults a sandbox), are paid while no one waits. It takes the
    request from us on a socket of its own, and is our child as a request's fork is."""

    def __init__(self, launcher_fds: list[int], shape: int, idle: bool) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            ours.close()
            _wait_as_spare(theirs, launcher_fds, shape, idle)
        theirs.close()
        self.pid = pid
        self.sock = ours
        self.shape = shape
        self._ready = False
        self.gone = False  # it ended before a request (killed)

    @staticmethod
    def fork(launcher_fds: list[int], shape: int, *, idle: bool) -> _Spare | None:
        """One, or None if it cannot be forked now (then a request is forked)."""
        try:
            return _Spare(launcher_fds, shape, idle)
        except OSError:
            return None

    def ready(self) -> bool:
        """Whether it has copied its pages (said so): a request never waits for that."""
        if not self._ready and not self.gone:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:
                self._ready = self.sock.recv(16) == b"ready"
                self.gone = not self._ready  # (it ended: EOF)
        return self._ready

    def close(self) -> None:
        """Forget one that has gone: reap it."""
        self.sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def drop(self) -> int:
        """Tell it to end (its socket's EOF; its pid 1 dies with it): its pid, to reap."""
        self.sock.close()
        return self.pid

    def hand(self, data: bytes, fds: list[int]) -> bool:
        """Pass it the request as we got it; False if it has gone (then it is reaped)."""
        try:
            socket.send_fds(self.sock, [data], fds)
        except OSError:
            self.close()
            return False
        self.sock.close()
        return True


def _wait_as_spare(sock: socket.socket, launcher_fds: list[int], shape: int, idle: bool) -> None:
    """In the spare: copy our pages now (`idle`), make what the shape lets us make before
    the request (its namespaces, pid 1: process.Pid1Ahead), wait for a request, run it
    as a supervisor."""
    code = 0
    try:
        for fd in launcher_fds:
            os.close(fd)
        if idle:
            # A full collection writes every object's header: the pages are copied here,
            # not one fault at a time in the sandbox's start. Not for a build's spare,
            # asked for ahead: its ~4 ms of CPU (twice, with pid 1's) competed with the
            # engine's work between the steps on this 2-core machine, and a build whose
            # RUN steps had it took longer than one whose steps forked on request.
            copy_pages()
        ahead = None
        if shape != NO_SHAPE:  # (failing, we end without a word: the launcher forks)
            from builder.sandbox.process import Pid1Ahead

            ahead = Pid1Ahead(shape, sock.fileno(), idle)
        with contextlib.suppress(OSError):  # (the launcher has gone: nothing comes)
            sock.send(b"ready")
        data, fds = take_request(sock)
        if fds:  # (nothing: the launcher has gone)
            code = 255
            _supervisor(data, fds, [sock.fileno()], ahead)
    except BaseException as err:  # never back into the launcher's loop
        with contextlib.suppress(BaseException):
            os.write(2, f"builder: sandbox launcher: {err}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def copy_pages() -> None:
    """Copy now the pages a fork of ours would copy one fault at a time as it works."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _supervisor(
    data: bytes, fds: list[int], launcher_fds: list[int], ahead: Pid1Ahead | None = None
) -> None:
    """In the fork: the caller's fds where it has them, its state, then the supervisor.
    A pid 1 forked ahead gets the request first: it takes the caller's fds and state
    while we mount."""
    from builder.sandbox import process

    code = 255
    try:
        for fd in launcher_fds:
            os.close(fd)
        data = data[_SHAPE.size :]
        plan, wanted, context = pickle.loads(data)
        if ahead is not None:
            ahead.hand(data, fds, {n for n, _ in wanted})
        life = place(fds, wanted)
        context.adopt()
        code = process.supervise_launched(plan, life, ahead)
    except BaseException as err:  # never back into the launcher's loop
        with contextlib.suppress(BaseException):
            os.write(2, f"builder: sandbox launcher: {err}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def take_request(sock: socket.socket) -> tuple[bytes, list[int]]:
    """A request as a spare gets it (nothing, if the other end has gone)."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, _MAX_FDS, socket.MSG_CMSG_CLOEXEC)
    except OSError:  # (ECONNRESET)
        return b"", []
    return data, fds


def place(fds: list[int], wanted: tuple[tuple[int, bool], ...]) -> int:
    """Put fds[1:] at the numbers in `wanted` (with their close-on-exec flag); the
    request's socket (fds[0]) goes above them all. Its number."""
    above = max([*fds, *(n for n, _ in wanted)]) + 1
    moved = []
    for fd in fds:
        moved.append(_dup_above(fd, above))
        os.close(fd)
    life, rest = moved[0], moved[1:]
    for fd, (number, cloexec) in zip(rest, wanted, strict=True):
        os.dup2(fd, number, inheritable=not cloexec)
        os.close(fd)
    return life


def _dup_above(fd: int, low: int) -> int:
    import fcntl

    new: int = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    return new


def fd_flags(numbers: set[int]) -> dict[int, bool]:
    """The caller's open fds among `numbers`, each with its close-on-exec flag."""
    import fcntl

    found: dict[int, bool] = {}
    for fd in sorted(n for n in numbers if n >= 0):
        try:
            found[fd] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        except OSError:
            continue  # not open (a closed stdin): the fork would not have it either
    return found
