"""The console script: a thin client of a warm `builder server`, or today's CLI in-process.

A one-shot `builder` spends most of a cached build or a `run` importing itself (issue 9).
With the opt-in ($BUILDER_SERVER=auto, or `[cli] server = "auto"` in the config file) the
client hands this invocation to a server that has imported everything already: it sends its
argv, environment, umask, rlimits, signal dispositions and mask, the encodings of its stdio,
and its stdin/stdout/stderr and cwd as file descriptors (SCM_RIGHTS); the server forks a
child that becomes this CLI (builder/cli/zygote.py); the child's exit status (from the child
itself as it exits, or from the server once it reaped a killed one) is the client's. Signals
the client gets are forwarded to the child (docker's sig-proxy list,
builder/sandbox/sigproxy.py) through a pidfd, so a recycled pid can never be hit.
Without a server the call runs one-shot, and with auto a server is started in the
background for the next call (Gradle's daemon does the same).

This module runs before anything else is imported, so it imports almost nothing: `posix`,
`sys` and `marshal` (built in, already loaded by the interpreter) and, only on the server
path, `_socket` and `_signal` (C modules; socket.py and signal.py cost ~5 ms with enum).
Not `os`: bin/builder starts the interpreter without site (-S), which would have imported
it, and os with its environ mapping (collections.abc) costs ~2-3 ms; posix is os's C half.
Without the opt-in the only work is an environment lookup and a stat of the config file.
Nothing else of builder may be imported at module level here (test_startup_imports pins it).
"""

import marshal
import posix
import sys

TYPE_CHECKING = False  # typing's would import typing (~3 ms); mypy takes any as true
if TYPE_CHECKING:
    from collections.abc import Mapping

ENV = "BUILDER_SERVER"
DIR_ENV = "BUILDER_SERVER_DIR"  # the socket dir (tests, CI); default: see server_dir()
IDLE_ENV = "BUILDER_SERVER_IDLE"
PROTOCOL = 1
# What a request carries besides its marshalled tuple: stdin, stdout, stderr, the cwd.
REQUEST_FDS = 4
MAX_MESSAGE = 1 << 20
_NAMESPACES = ("mnt", "pid", "net", "user", "ipc", "uts", "cgroup")
# Always in-process: the server itself; and login, whose password prompt opens /dev/tty
# (getpass), which the server's child cannot: it has no controlling terminal.
ONE_SHOT_VERBS = ("server", "login")


def main(site_pending: bool = False) -> None:
    """The `builder` console script and `python -m builder`. site_pending: bin/builder
    started the interpreter with -S (its site setup costs ~4-5 ms that the server path
    does not need); the one-shot path completes it before it imports the CLI's
    dependencies."""
    if _wanted() and _verb(sys.argv[1:]) not in ONE_SHOT_VERBS:
        _via_server()  # returns only when the server could not take this call
    if site_pending:
        import site

        site.main()
    from builder.cli.main import main as one_shot

    one_shot()


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def environ() -> "Mapping[bytes, bytes]":
    """os.environb, without importing os: posix.environ is the environment the process
    started with, which nothing can have changed before os was imported (os.environ's
    writes go to os's own mapping and putenv, not to posix.environ)."""
    os = sys.modules.get("os")
    return os.environb if os is not None else posix.environ


def getenv(name: str) -> str | None:
    """os.environ.get, decoded as os decodes it."""
    value = environ().get(name.encode(_FS_ENCODING, _FS_ERRORS))
    return None if value is None else value.decode(_FS_ENCODING, _FS_ERRORS)


def _wanted() -> bool:
    mode = getenv(ENV)
    if mode is None:
        mode = _configured()
    if mode in ("auto", "on"):
        return True
    if mode in ("", "off", "0", "false", "no"):
        return False
    sys.stderr.write(f"error: ${ENV}={mode!r}: expected auto or off\n")
    posix._exit(2)  # UsageError's exit code, without importing builder.errors


def config_file() -> str:
    """builder.config.config_path's answer, in plain strings (pathlib costs ~3 ms here);
    tests/e2e/test_server.py checks that the two agree."""
    named = getenv("BUILDER_CONFIG")
    if named:
        return named
    if posix.geteuid() == 0:
        return "/etc/builder/builder.toml"
    xdg = getenv("XDG_CONFIG_HOME") or ""
    if xdg.startswith("/"):
        return f"{xdg}/builder/builder.toml"
    home = getenv("HOME")
    if home is None:  # expanduser's lookup in the passwd database
        import os.path

        return os.path.expanduser("~/.config/builder/builder.toml")
    return f"{home.rstrip('/')}/.config/builder/builder.toml"


def _configured() -> str:
    """`[cli] server` of the config file; "" when there is none (the usual case: a stat)."""
    try:
        with open(config_file(), "rb") as f:
            data = f.read()
    except OSError:
        return ""
    if b"server" not in data:
        return ""
    import tomllib

    try:
        cli = tomllib.loads(data.decode()).get("cli", {})
    except (ValueError, UnicodeDecodeError):
        return ""  # the one-shot CLI reports a bad config file when it reads one
    value = cli.get("server", "") if isinstance(cli, dict) else ""
    return value if isinstance(value, str) else ""


def _verb(args: list[str]) -> str:
    """The verb of a command line: the first word that is not a global option."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--root":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def package_dir() -> str:
    here = __file__
    if not here.startswith("/") or "/." in here or "//" in here:  # abspath's cases
        import os.path

        here = os.path.abspath(here)
    return here.rsplit("/", 2)[0]  # .../builder/cli/client.py: the builder package


def server_dir() -> str | None:
    """Where the sockets live: 0700, the user's own (root: /run/builder/server; a user:
    $XDG_RUNTIME_DIR/builder/server, as podman keeps its sockets); None: no server."""
    named = getenv(DIR_ENV)
    if named:
        return named
    if posix.geteuid() == 0:
        return "/run/builder/server"
    runtime = getenv("XDG_RUNTIME_DIR") or ""
    return f"{runtime}/builder/server" if runtime.startswith("/") else None


def code_key() -> str:
    """The server's identity: this interpreter and this builder package, with the things
    fixed at interpreter start: how bytes become text, and the interpreter's flags (-O,
    -X dev, -E, -I...; a client started with others gets a server of its own)."""
    return "\0".join(
        (
            sys.executable,
            package_dir(),
            sys.getfilesystemencoding(),
            sys.getfilesystemencodeerrors(),
            _flags(),
        )
    )


def _flags() -> str:
    """The interpreter's flags but -S: bin/builder's client runs without site's setup, and
    the server it starts, or finds, with it (the server imports the CLI's dependencies)."""
    names = sys.flags.__match_args__
    return str([f"{n}={v}" for n, v in zip(names, sys.flags, strict=False) if n != "no_site"])


# The compiled server path of this client (builder/cli/native_client.c), beside this file
# in a wheel; bin/builder execs it when present.
NATIVE_CLIENT = "native_client"


def native_key(exe: str, utf8_mode: int) -> str:
    """What the native client sends as its key, and names its socket by (an alias the
    server links to its own): the binary's real path (its package) and the interpreter's
    UTF-8 mode, which its locale decides (native_client.c)."""
    return f"native\0{exe}\0utf8_mode={utf8_mode}"


def socket_name(key: str) -> str:
    """A short stable name for the key (FNV-1a, 64 bits: hashlib costs an import)."""
    h = 0xCBF29CE484222325
    for byte in key.encode("utf-8", "surrogateescape"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def namespaces(pid: int | str) -> tuple[tuple[int, int], ...]:
    """The (dev, inode) of each namespace of the process: equal for two processes in the
    same namespaces."""
    found = []
    for ns in _NAMESPACES:
        st = posix.stat(f"/proc/{pid}/ns/{ns}")
        found.append((st.st_dev, st.st_ino))
    return tuple(found)


def pack_fds(fds: list[int]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)


def unpack_fds(data: bytes) -> list[int]:
    return [
        int.from_bytes(data[i : i + 4], sys.byteorder, signed=True) for i in range(0, len(data), 4)
    ]


def peer_uid(sock: "object") -> int:
    import _socket

    assert isinstance(sock, _socket.socket)
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)  # struct ucred: pid, uid, gid


def connect(path: str) -> "object | None":
    """A connection to the server at path whose peer is this user; None: no server."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        if peer_uid(sock) != posix.geteuid():
            raise OSError("the server is another user's")
    except OSError:
        sock.close()
        return None
    return sock


def _stream_state(stream: object) -> tuple[str, str, bool, bool] | None:
    """How Python set up a std stream here (encoding, errors, line buffering, write
    through): the child re-makes its own the same way."""
    try:
        return (
            stream.encoding,  # type: ignore[attr-defined]
            stream.errors,  # type: ignore[attr-defined]
            stream.line_buffering,  # type: ignore[attr-defined]
            stream.write_through,  # type: ignore[attr-defined]
        )
    except AttributeError:
        return None


def request(argv: list[str]) -> bytes:
    """The run request: the server reads the rest (umask, rlimits, signal mask and
    dispositions, cgroups, namespaces) from /proc/<our pid>, which costs us nothing."""
    streams = tuple(_stream_state(s) for s in (sys.stdin, sys.stdout, sys.stderr))
    env = dict(environ())
    return marshal.dumps(("run", PROTOCOL, code_key(), argv, env, streams))


def _via_server() -> None:
    """Run this call in the server's child and exit with its status; return when there is
    no server to take it (then, with auto, one is started for the next call)."""
    folder = server_dir()
    if folder is None:
        return
    try:
        for fd in (0, 1, 2):  # before the connection: it would take a closed one's number
            posix.fstat(fd)
    except OSError:
        return
    path = f"{folder}/{socket_name(code_key())}.sock"
    sock = connect(path)
    if sock is None:
        start_server(folder)
        return
    import _socket

    assert isinstance(sock, _socket.socket)
    try:
        cwd = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        return
    try:
        fds = pack_fds([0, 1, 2, cwd])
        sock.sendmsg([request(sys.argv)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        reply, ancillary, _, _ = sock.recvmsg(MAX_MESSAGE, _socket.CMSG_SPACE(4))
    except OSError:
        return
    finally:
        posix.close(cwd)
    answer = marshal.loads(reply) if reply else None
    if answer is not None and answer[0] == "exit":
        # The child reports its own exit (builder/cli/zygote.py): it can end before the
        # server has sent "started".
        _exit_as(*answer[1:])
    if answer is None or answer[0] != "started":
        return  # refused before anything ran (stale code, another namespace...): one-shot
    pidfd = unpack_fds(ancillary[0][2])[0]
    _forward_signals(pidfd, answer[1])
    while True:
        try:
            reply = sock.recv(MAX_MESSAGE)
        except OSError:
            reply = b""
        if reply:
            break
        # The server is gone (killed: its children die with it, PR_SET_PDEATHSIG).
        sys.stderr.write("error: the builder server went away\n")
        posix._exit(125)
    _exit_as(*marshal.loads(reply)[1:])


def _forward_signals(pidfd: int, signals: list[int]) -> None:
    """docker's sig-proxy: what we get, the child gets — also a signal we were started
    with ignored (nohup, a shell's background job ignores INT and QUIT), as the one-shot
    CLI's forwarder and docker's signal.Notify catch it too. The server sends the list
    (builder.sandbox.sigproxy's, which imports `signal` and its enums: ~5 ms we need not
    pay here)."""
    import _signal  # type: ignore[import-not-found]  # signal.py imports enum: ~5 ms

    def forward(sig: int, frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is an import this module does not pay for
            _signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass  # it has exited: its status is on the way

    for sig in signals:
        try:  # noqa: SIM105 - contextlib is an import this module does not pay for
            _signal.signal(sig, forward)
        except (OSError, ValueError):
            pass


def _exit_as(kind: str, value: int) -> None:
    """The child's end, as ours. Killed by signal N, we kill ourselves with N (its default
    action restored) so that our parent sees the same wait status as from a one-shot CLI
    (a shell prints "Killed", make reports the signal); 128+N only if we survive it."""
    sys.stdout.flush()
    sys.stderr.flush()
    if kind == "signal":
        import _signal

        try:
            _signal.signal(value, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [value])
        except (OSError, ValueError):
            pass
        posix.kill(posix.getpid(), value)
        posix._exit(128 + value)
    posix._exit(value)


def start_server(folder: str) -> None:
    """Start a server in the background for the next call, and return at once: double
    fork, new session, stdio to a log beside the socket, cwd /. It re-checks everything
    itself (only one server per socket: it holds a lock)."""
    import os  # only here: the one-shot call that starts a server pays for it

    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        try:  # noqa: SIM105 - no contextlib here
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        log = os.open(
            f"{folder}/{socket_name(code_key())}.log",
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
            0o600,
        )
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 1 << 16)  # the caller's pipes must not stay open in the server
        os.chdir("/")
        boot = (
            "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from builder.cli.server import serve_in_background; serve_in_background()"
        )
        parent = os.path.dirname(package_dir())
        import subprocess  # only here: the interpreter's flags, so its code_key is ours

        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        flags = [flag for flag in flags if flag != "-S"]  # see _flags
        os.execv(sys.executable, [sys.executable, *flags, "-c", boot, parent])
    finally:
        os._exit(127)
