"""`builder server`: the warm zygote behind the thin client (builder/cli/client.py).

One long-lived process imports every builder module, the third-party ones they use and the
recipe grammar's parser, freezes its heap (gc.freeze: a forked child does not copy pages to
count references), then serves on a SOCK_SEQPACKET socket in a 0700 dir of the user's.
A request runs in a child that becomes the client's CLI (builder/cli/zygote.py): the spare
child forked between calls and warmed (its pages copied) while no one waited, or, if none
is ready (a call while another runs), one forked for it. The server itself never runs user
code. One thread, one poll loop over the listening socket, the client connections, one
pidfd per child and the spare's socket:

- a request is refused (and the client runs one-shot) unless the peer is this user
  (SO_PEERCRED), in the same namespaces (/proc/PID/ns/*), of the same code (interpreter,
  package dir, filesystem encoding), and no file of the package changed since the server
  started (builder/cli/codewatch.py): a changed tree makes the server refuse, stop
  listening and exit once its children are done, and the next call starts a fresh one;
- the child's pid goes back to the client with a pidfd (SCM_RIGHTS) for the signals it
  forwards, and its wait status when it ends (a child that exits normally has told the
  client its status itself, a few ms earlier: builder/cli/zygote.py);
- a client that hangs up (killed) has its child SIGKILLed: the CLI's own supervisors clean
  up after a killed CLI as they do without a server;
- SIGTERM, SIGINT or `builder server stop`: stop listening, exit once the children are done;
- idle (no connection, no child) for $BUILDER_SERVER_IDLE seconds (default 600): exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import marshal
import os
import pkgutil
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any, cast

import click

import builder
from builder import record
from builder.cli import client
from builder.cli.codewatch import CodeWatch
from builder.cli.zygote import Adopted, become, wait_as_spare
from builder.errors import BuilderError, UsageError
from builder.sandbox import cgroups
from builder.sandbox.sigproxy import proxied

DEFAULT_IDLE = 600.0
# Third-party modules the verbs import on first use; the server loads them up front.
# difflib: click imports it to suggest a name whenever a short option (-f, -t) is first
# tried as a long one, i.e. on nearly every call (~2 ms in each child).
_THIRD_PARTY = (
    "lark",
    "zstandard",
    "tqdm",
    "urllib3",
    "ssl",
    "tomllib",
    "concurrent.futures",
    "difflib",
)
_RLIMITS = tuple(
    getattr(resource, name)
    for name in dir(resource)
    if name.startswith("RLIMIT_") and isinstance(getattr(resource, name), int)
)


def preload() -> None:
    """Import everything a verb may use, and build the recipe parser."""
    for info in pkgutil.walk_packages(builder.__path__, "builder."):
        if info.name.endswith("__main__"):
            continue
        record.compile_classes(importlib.import_module(info.name))
    for name in _THIRD_PARTY:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from builder.recipe import serial, syntax

    syntax._parser()
    serial.parser_fingerprint()  # what each build's recipe cache key starts with
    # The default seccomp program (`run`'s, without --cap-add/--security-opt): compiled,
    # or read from the host's cache, once; each call's child finds it in seccomp_cache's
    # memo instead of reading and checking the store's copy (~1 ms a `run`).
    from builder.sandbox import confine
    from builder.sandbox.security import from_flags

    with contextlib.suppress(BuilderError, OSError):  # the call will say what is wrong
        confine.prepare(from_flags())
    _parse_the_common_verbs()


# Command lines parsed (never run) by the server before it forks: see below.
_WARM_CALLS = (
    ("run", ("--rm", "--network", "none", "-e", "A=b", "busybox", "/bin/true")),
    ("build", ("--network", "none", "-f", "Dockerfile", "--build-arg", "A=b", "-t", "a", ".")),
)


def _parse_the_common_verbs() -> None:
    """Click's parse of `run` and `build` lines, a few times over. Python 3.11 rewrites the
    bytecode it runs in place (quickening, then specialization, after ~8 calls): done here,
    every child starts from specialized code instead of doing it on its own copy, a page
    fault at a time (the child's parse: ~4 -> ~3 ms, stamps at load ~4). Parsing runs no
    verb: none of our options has a callback, and make_context invokes nothing."""
    from builder.cli.main import cli

    for _ in range(16):
        for verb, args in _WARM_CALLS:
            ctx = cli.make_context("builder", ["--root", "/nonexistent", verb, *args])
            command = cli.get_command(ctx, verb)
            assert command is not None
            command.make_context(verb, list(args), parent=ctx)


# sys.flags of an interpreter started as bin/builder starts it, with no PYTHON* variable
# (the native client declines any): no_site and utf8_mode aside (see native_alias).
_DEFAULT_FLAGS = {
    "debug": 0,
    "inspect": 0,
    "interactive": 0,
    "optimize": 0,
    "dont_write_bytecode": 0,
    "no_user_site": 0,
    "ignore_environment": 0,
    "verbose": 0,
    "bytes_warning": 0,
    "quiet": 0,
    "hash_randomization": 1,
    "isolated": 0,
    "dev_mode": False,
    "warn_default_encoding": 0,
    "safe_path": False,
    "int_max_str_digits": -1,
}


def native_alias() -> tuple[str, str] | None:
    """(the native client's key, its binary's real path) when this server may take its
    calls: the binary is in this server's package, that package is the one installed in
    this interpreter's venv, and the interpreter runs as the venv's python3 with default
    flags and UTF-8 file names -- i.e. this server's code key is the one the Python client
    the binary falls back to (`python3 -S bin/builder`, no PYTHON* variable) would compute,
    so a call reaches the same code either way. None: the native client finds no alias and
    runs the Python client, which finds (or starts) the server of its own key."""
    package = client.package_dir()
    exe = f"{package}/cli/{client.NATIVE_CLIENT}"
    if not os.access(exe, os.X_OK):
        return None
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    installed = f"{sys.prefix}/lib/python{version}/site-packages/builder"
    if os.path.realpath(package) != os.path.realpath(installed):
        return None
    if os.path.realpath(sys.executable) != os.path.realpath(f"{sys.prefix}/bin/python3"):
        return None
    if (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()) != (
        "utf-8",
        "surrogateescape",
    ):
        return None
    names = sys.flags.__match_args__
    flags = dict(zip(names, sys.flags, strict=False))
    del flags["no_site"], flags["utf8_mode"]
    if flags != _DEFAULT_FLAGS:
        return None
    exe = os.path.realpath(exe)
    return client.native_key(exe, sys.flags.utf8_mode), exe


class _Refused(Exception):
    """A request the server will not take; the client runs it one-shot."""


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.child = 0
        self.pidfd = -1


class _Spare:
    """A child forked ahead of the next call (zygote.wait_as_spare), ready once it says so."""

    def __init__(self, pid: int, pidfd: int, sock: socket.socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.sock = sock
        self.ready = False


class Server:
    def __init__(self, folder: str, idle: float, code: CodeWatch) -> None:
        self.folder = folder
        self.idle = idle
        self.key = client.code_key()
        self.path = f"{folder}/{client.socket_name(self.key)}.sock"
        self.native = native_alias()
        # The native client's name for our socket (a symlink to it), when it may use us.
        self.alias = None if self.native is None else self._alias_path(self.native[0])
        self.namespaces = client.namespaces("self")
        self.code = code  # as it was before the imports
        self.cgroup_mounts = cgroups.mounted()
        self.forwarded = list(proxied())  # what the client forwards to the child
        self.listener: socket.socket | None = None
        self.connections: dict[int, _Connection] = {}  # by socket fd
        self.children: dict[int, _Connection] = {}  # by pidfd
        self.spare: _Spare | None = None
        self.stopping = False
        self.inode = 0  # of the socket's file, once bound
        self.served = 0  # calls run, for `builder server status` (and the tests)

    def serve(self) -> None:
        with self._listening():
            wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            signal.set_wakeup_fd(wake_w)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._stop)
            poll = select.poll()
            assert self.listener is not None
            poll.register(self.listener, select.POLLIN)
            poll.register(wake_r, select.POLLIN)
            last = time.monotonic()
            gc.collect()
            gc.freeze()
            while True:
                if self.stopping:
                    self._close_listener(poll)
                    self._retire_spare(poll)
                    if not self.connections:
                        return
                elif self.spare is None and not self.children:
                    self._fork_spare(poll)  # between calls: not beside a running one
                busy = bool(self.connections)
                timeout = None if busy else max(0.0, self.idle - (time.monotonic() - last))
                if not busy and timeout == 0:
                    return
                events = poll.poll(None if timeout is None else timeout * 1000)
                if events:
                    last = time.monotonic()
                for fd, event in events:
                    if fd == wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 512)
                    elif self.listener is not None and fd == self.listener.fileno():
                        self._accept(poll)
                    elif fd in self.children:
                        self._reap(poll, self.children[fd])
                    elif self.spare is not None and fd == self.spare.sock.fileno():
                        self._spare_ready(poll)
                    elif self.spare is not None and fd == self.spare.pidfd:
                        self._retire_spare(poll)  # it died waiting
                    elif fd in self.connections:
                        self._on_connection(poll, self.connections[fd], event)

    def _stop(self, sig: int, frame: object) -> None:
        self.stopping = True

    @contextlib.contextmanager
    def _listening(self) -> Iterator[None]:
        """The socket (the caller holds the lock: no other server binds it meanwhile)."""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            listener.bind(self.path)
            listener.listen(64)
            self.listener = listener
            self.inode = os.stat(self.path).st_ino
            if self.alias is not None:  # atomically: a client never sees half of it
                temporary = f"{self.alias}.{os.getpid()}.tmp"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                os.symlink(os.path.basename(self.path), temporary)
                os.replace(temporary, self.alias)
            yield
        finally:
            self._close_listener(None)

    def _alias_path(self, key: str) -> str:
        return f"{self.folder}/{client.socket_name(key)}.sock"

    def _close_listener(self, poll: select.poll | None) -> None:
        """Stop taking calls: the socket goes, so the next client starts a new server."""
        if self.listener is None:
            return
        if poll is not None:
            poll.unregister(self.listener)
        for path in (self.alias, self.path):  # the alias first: it points to the socket
            with contextlib.suppress(OSError):
                if path is not None and os.stat(path).st_ino == self.inode:  # not a successor's
                    os.unlink(path)
        self.listener.close()
        self.listener = None

    def _accept(self, poll: select.poll) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        self.connections[sock.fileno()] = _Connection(sock)
        poll.register(sock, select.POLLIN)

    def _on_connection(self, poll: select.poll, conn: _Connection, event: int) -> None:
        if conn.child:  # only a hang-up is expected now: the client died, so does its CLI
            if event & (select.POLLHUP | select.POLLERR) or not _recv_quietly(conn.sock):
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(conn.pidfd, signal.SIGKILL)
                poll.unregister(conn.sock)
            return
        try:
            data, ancillary, _, _ = conn.sock.recvmsg(
                client.MAX_MESSAGE, socket.CMSG_SPACE(4 * client.REQUEST_FDS)
            )
        except OSError:
            data, ancillary = b"", []
        fds = [fd for level, kind, raw in ancillary for fd in client.unpack_fds(raw)]
        try:
            if not data:
                raise _Refused("no request")
            try:
                self._handle(poll, conn, data, fds)
            except (ValueError, EOFError, TypeError) as err:  # not a request marshal reads
                raise _Refused(f"a bad request ({err})") from None
        except _Refused as refusal:
            # The log (or the foreground server's terminal) says why a call ran one-shot.
            print(f"builder server: refused a call: {refusal}", file=sys.stderr, flush=True)
            self._send(conn, ("refused", str(refusal)))
            self._drop(poll, conn)
        finally:
            for fd in fds:
                os.close(fd)

    def _handle(self, poll: select.poll, conn: _Connection, data: bytes, fds: list[int]) -> None:
        pid, uid, _ = _peer(conn.sock)
        if uid != os.geteuid():
            raise _Refused(f"uid {uid} is not the server's")
        request = marshal.loads(data)
        if request[0] == "stop":
            self.stopping = True
            self._send(conn, ("stopping", os.getpid()))
            return self._drop(poll, conn)
        if request[0] == "status":
            ready = self.spare is not None and self.spare.ready
            self._send(conn, ("status", os.getpid(), len(self.children), self.served, ready))
            return self._drop(poll, conn)
        kind, protocol, key, argv, env, streams = request
        native = self.native[1] if self.native is not None and key == self.native[0] else None
        if (kind, protocol) != ("run", client.PROTOCOL) or (key != self.key and native is None):
            raise _Refused("another protocol or code")
        if native is not None and _exe(pid) != native:
            raise _Refused("the native client's key from another program")
        if len(fds) != client.REQUEST_FDS:
            raise _Refused("the client's fds did not come")
        if self.stopping:
            raise _Refused("stopping")
        if self.code.changed():
            self.stopping = True
            raise _Refused("stale: the code on disk changed")
        if len(os.listdir("/proc/self/task")) != 1:  # a fork copies only the calling thread
            self.stopping = True
            raise _Refused("the server has threads")
        adopted = self._adopt(pid, argv, env, streams, fds, conn.sock.fileno())
        spare = self._take_spare(poll, adopted)
        if spare is not None:
            conn.child, conn.pidfd = spare
        else:
            server_pid = os.getpid()
            child = os.fork()
            if child == 0:
                become(adopted, server_pid)
            conn.child = child
            conn.pidfd = os.pidfd_open(child)
            poll.register(conn.pidfd, select.POLLIN)
        self.served += 1
        self.children[conn.pidfd] = conn
        if not self._send(conn, ("started", self.forwarded, conn.child), [conn.pidfd]):
            signal.pidfd_send_signal(conn.pidfd, signal.SIGKILL)
        return None

    def _adopt(
        self,
        pid: int,
        argv: list[str],
        env: dict[bytes, bytes],
        streams: list[object],
        fds: list[int],
        reply: int,
    ) -> Adopted:
        """What the child takes from the client, read from /proc/<pid> now (the client
        waits for our answer, so none of it changes meanwhile)."""
        try:
            if client.namespaces(pid) != self.namespaces:
                raise _Refused("the client is in other namespaces")
            status = _proc_status(pid)
            rlimits = {r: resource.prlimit(pid, r) for r in _RLIMITS}
            cgroup_procs = self._cgroup_procs(pid)
        except OSError as err:
            raise _Refused(f"cannot read the client's state: {err}") from None
        if os.geteuid() != 0:
            for r, (_, hard) in rlimits.items():
                mine = resource.getrlimit(r)[1]
                if mine != resource.RLIM_INFINITY and (
                    hard == resource.RLIM_INFINITY or hard > mine
                ):
                    raise _Refused("the client's limits are above the server's")
        return Adopted(
            argv=argv,
            env=env,
            streams=streams,  # type: ignore[arg-type]
            fds=fds,
            reply=reply,
            umask=int(status["Umask"], 8),
            rlimits=rlimits,
            blocked=_signal_set(status["SigBlk"]),
            ignored=_signal_set(status["SigIgn"]),
            python_handled=_signal_set(status["SigCgt"]),
            cgroup_procs=cgroup_procs,
        )

    def _cgroup_procs(self, pid: int) -> list[str]:
        """The cgroup.procs file of each of the client's cgroups the child is not in
        already (a move costs a few ms a hierarchy: the usual client shares them all)."""
        return cgroups.procs_files(
            _read(f"/proc/{pid}/cgroup"), _read("/proc/self/cgroup"), self.cgroup_mounts
        )

    def _fork_spare(self, poll: select.poll) -> None:
        """Fork the next call's child now, while no call waits for it (a fork copies only
        the calling thread: none is made with another thread alive)."""
        if self.listener is None or len(os.listdir("/proc/self/task")) != 1:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            wait_as_spare(theirs, server_pid)
        theirs.close()
        self.spare = _Spare(pid, os.pidfd_open(pid), ours)
        poll.register(self.spare.pidfd, select.POLLIN)
        poll.register(ours, select.POLLIN)

    def _spare_ready(self, poll: select.poll) -> None:
        assert self.spare is not None
        if _recv_quietly(self.spare.sock):
            self.spare.ready = True
            poll.unregister(self.spare.sock)
        else:
            self._retire_spare(poll)

    def _take_spare(self, poll: select.poll, adopted: Adopted) -> tuple[int, int] | None:
        """Hand the call to the spare child if it is ready: its (pid, pidfd); None: fork
        (a spare still getting ready stays for the next call)."""
        spare = self.spare
        if spare is None or not spare.ready:
            return None
        message, fds = adopted.to_wire()
        try:
            spare.sock.sendmsg(
                [message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, client.pack_fds(fds))]
            )
        except OSError:  # it died waiting
            self._retire_spare(poll)
            return None
        self.spare = None
        spare.sock.close()
        return spare.pid, spare.pidfd

    def _retire_spare(self, poll: select.poll) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            return
        with contextlib.suppress(KeyError):
            poll.unregister(spare.sock)
        poll.unregister(spare.pidfd)
        spare.sock.close()  # it exits when it reads the end
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spare.pid, 0)
        os.close(spare.pidfd)

    def _reap(self, poll: select.poll, conn: _Connection) -> None:
        _, status = os.waitpid(conn.child, 0)
        if os.WIFSIGNALED(status):
            self._send(conn, ("exit", "signal", os.WTERMSIG(status)))
        else:
            self._send(conn, ("exit", "code", os.waitstatus_to_exitcode(status)))
        poll.unregister(conn.pidfd)
        del self.children[conn.pidfd]
        os.close(conn.pidfd)
        self._drop(poll, conn)

    def _drop(self, poll: select.poll, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if self.connections.pop(fd, None) is not None:
            with contextlib.suppress(KeyError):
                poll.unregister(fd)
        if conn.pidfd < 0 or conn.pidfd not in self.children:
            conn.sock.close()

    @staticmethod
    def _send(conn: _Connection, message: tuple[Any, ...], fds: list[int] | None = None) -> bool:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, client.pack_fds(fds))] if fds else []
        try:
            conn.sock.sendmsg([marshal.dumps(message)], ancillary)
        except OSError:
            return False
        return True


def _recv_quietly(sock: socket.socket) -> bool:
    """Whether the client is still there (it sends nothing while its CLI runs)."""
    try:
        return bool(sock.recv(1, socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _peer(sock: socket.socket) -> tuple[int, int, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, gid = (int.from_bytes(raw[i : i + 4], sys.byteorder) for i in (0, 4, 8))
    return pid, uid, gid


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _signal_set(mask: str) -> set[int]:
    bits = int(mask, 16)
    return {n for n in range(1, 65) if bits >> (n - 1) & 1}


def _private_dir(folder: str) -> None:
    """The socket dir: made 0700, and refused unless it is ours and no one else's."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if (
        not os.path.isdir(folder)
        or os.path.islink(folder)
        or st.st_uid != os.geteuid()
        or st.st_mode & 0o077
    ):
        raise UsageError(
            f"{folder}: not a private dir of this user (0700): refusing to serve there"
        )


def _idle_from_env() -> float:
    raw = os.environ.get(client.IDLE_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_IDLE
    except ValueError:
        raise UsageError(f"${client.IDLE_ENV}={raw!r}: expected seconds") from None


def _folder() -> str:
    folder = client.server_dir()
    if folder is None:
        raise UsageError(
            "no place for the server's socket: set $XDG_RUNTIME_DIR or $BUILDER_SERVER_DIR"
        )
    return folder


def run_server(idle: float) -> None:
    """Take the socket's lock first (a second server started by a racing client gives up
    before it imports anything), note the code files, import everything, serve from /
    (a server must not keep a directory busy; sys.path made absolute for that)."""
    folder = _folder()
    _private_dir(folder)
    key = client.socket_name(client.code_key())
    lock = os.open(f"{folder}/{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"a builder server is running already in {folder}") from None
        code = CodeWatch()
        preload()
        from builder.sandbox import launcher

        # The calls' sandboxes are its forks, not copies of us; `run --rm`'s handoff
        # removes the container with this module's code.
        launcher.begin(preload=("builder.runtime.container",), wait=True)
        sys.path[:] = [os.path.abspath(entry) for entry in sys.path]
        os.chdir("/")
        Server(folder, idle, code).serve()
    finally:
        os.close(lock)


def serve_in_background() -> None:
    """What a client's background start runs (stdio already on the log, cwd /)."""
    try:
        run_server(_idle_from_env())
    except UsageError as err:
        print(f"builder server: {err.render()}", file=sys.stderr)
    os._exit(0)


def _ask(message: tuple[Any, ...]) -> tuple[Any, ...] | None:
    sock = client.connect(f"{_folder()}/{client.socket_name(client.code_key())}.sock")
    if sock is None:
        return None
    conn = cast("socket.socket", sock)  # a _socket.socket: send and recv are its own
    try:
        conn.send(marshal.dumps(message))
        reply = conn.recv(client.MAX_MESSAGE)
    finally:
        conn.close()
    return marshal.loads(reply) if reply else None


@click.group(invoke_without_command=True)
@click.option(
    "--idle",
    type=float,
    default=None,
    help=f"Exit after this many seconds without a call (default: ${client.IDLE_ENV}, else 600).",
)
@click.pass_context
def server(ctx: click.Context, idle: float | None) -> None:
    """Run the warm server in the foreground (for systemd or CI); clients use it with
    $BUILDER_SERVER=auto or `[cli] server = "auto"` in the config file."""
    if ctx.invoked_subcommand is not None:
        return
    run_server(_idle_from_env() if idle is None else idle)


@server.command()
def stop() -> None:
    """Ask the running server to exit once its calls are done."""
    reply = _ask(("stop",))
    if reply is None:
        click.echo("builder server: not running")
        return
    click.echo(f"builder server: stopping (pid {reply[1]})")


@server.command()
def status() -> None:
    """Whether a server of this code is running (exit 1 if not)."""
    reply = _ask(("status",))
    if reply is None:
        click.echo("builder server: not running")
        sys.exit(1)
    pid, running, served = reply[1:4]
    click.echo(f"builder server: running (pid {pid}, {running} calls running, {served} served)")
