"""The compiled thin client (builder/cli/native_client.c), as a wheel installs it: a call to
a warm server starts no Python; everything else goes to the Python client, which still
works. The wheel is bench/installed.py's (built once per source tree), the server a real
one started from it, the calls real processes."""

from __future__ import annotations

import marshal
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import installed
from builder.cli import client
from tests.e2e.runtime_support import kill_leftovers
from tests.e2e.support import Builder, make_context

IMAGE = "busybox:latest"
READY_SCRIPT = 'echo ready; read x; echo "got=$x $0"'


@pytest.fixture(scope="session")
def venv() -> Path:
    return installed.console_script().parent.parent


@pytest.fixture(scope="session")
def locales(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $LOCPATH with en_US.UTF-8 (UTF-8, but not the C locale nor a coercion target) and
    en_US.ISO-8859-1 (not UTF-8): the machine has C.UTF-8 only."""
    folder = tmp_path_factory.mktemp("locales")
    for charmap in ("UTF-8", "ISO-8859-1"):
        subprocess.run(
            ["localedef", "-i", "en_US", "-f", charmap, folder / f"en_US.{charmap}"],
            check=True,
            capture_output=True,
        )
    return folder


def _native(venv: Path) -> Path:
    (found,) = venv.glob(f"lib/python3*/site-packages/builder/cli/{client.NATIVE_CLIENT}")
    return found


def _python(venv: Path) -> str:
    return os.path.realpath(venv / "bin" / "python3")


class Server:
    def __init__(self, venv: Path, folder: Path) -> None:
        self.venv = venv
        self.folder = folder
        self.log = folder.parent / "server.log"
        # No PYTHON* variable (the native client declines them); a UTF-8 locale that is
        # not the C locale: the interpreter's UTF-8 mode is off, as in most sessions.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.env.update(
            {
                client.ENV: "auto",
                client.DIR_ENV: str(folder),
                client.IDLE_ENV: "20",
                "LC_ALL": "C.UTF-8",
            }
        )
        folder.mkdir(mode=0o700)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.venv / "bin" / "builder", "server", "--idle", "300"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while len(list(folder.glob("*.sock"))) < 2:  # its socket and the native alias
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def alias(self) -> Path:
        (link,) = [p for p in self.folder.glob("*.sock") if p.is_symlink()]
        return link

    def served(self) -> int:
        done = subprocess.run(
            [self.venv / "bin" / "builder", "server", "status"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"(\d+) served", done.stdout)
        assert found, done.stdout
        return int(found.group(1))

    def call_child(self) -> int:
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        (child,) = [int(c) for c in children if os.readlink(f"/proc/{c}/cwd") != "/"]
        return child

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # A server a fallback started in the background, if any.
        subprocess.run(
            [self.venv / "bin" / "builder", "server", "stop"], env=self.env, capture_output=True
        )

    def popen(
        self, builder: Builder, *args: str | bytes, env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        argv = [self.venv / "bin" / "builder", "--root", builder.root, *args]
        return subprocess.Popen(argv, env=env or self.env, **kw)

    def call(self, builder: Builder, *args: str, **kw: Any) -> tuple[int, bytes, bytes]:
        proc = self.popen(builder, *args, **kw)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err


@pytest.fixture
def server(venv: Path, tmp_path: Path, builder: Builder) -> Iterator[Server]:
    running = Server(venv, tmp_path / "server")
    try:
        yield running
    finally:
        running.stop()
        kill_leftovers(builder)


def _exe_while_running(
    server: Server, builder: Builder, arg0: str | bytes = "a", **kw: Any
) -> tuple[str, bytes]:
    """The client's /proc/PID/exe in the middle of a call, and the call's output."""
    proc = server.popen(
        builder, "run", "--rm", "-i", IMAGE, "sh", "-c", READY_SCRIPT, arg0,
        stdin=subprocess.PIPE, **kw,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n", proc.communicate()
    exe = os.readlink(f"/proc/{proc.pid}/exe")
    out, err = proc.communicate(b"go\n", timeout=60)
    assert proc.returncode == 0, err
    return exe, out


def test_the_native_client_takes_the_call(server: Server, builder: Builder) -> None:
    before = server.served()
    exe, out = _exe_while_running(server, builder)
    assert (exe, out) == (str(_native(server.venv)), b"got=go a\n")
    assert server.served() == before + 1


def test_a_link_to_the_command_takes_the_native_client_too(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    """`ln -s venv/bin/builder ~/bin/`: the interpreter and the client beside the target."""
    link = tmp_path / "bin" / "builder"
    link.parent.mkdir()
    link.symlink_to(server.venv / "bin" / "builder")
    argv = [
        link,
        "--root",
        builder.root,
        "run",
        "--rm",
        "-i",
        IMAGE,
        "sh",
        "-c",
        "echo ready; read x",
    ]
    proc = subprocess.Popen(argv, env=server.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert os.readlink(f"/proc/{proc.pid}/exe") == str(_native(server.venv))
    proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("case", "served"),
    [
        ({"PYTHONPATH": "/nonexistent"}, 1),  # the Python client's key has no PYTHONPATH
        ({"PYTHONDONTWRITEBYTECODE": "1"}, 0),  # another flag: a server of its own
        ({client.ENV: ""}, 0),  # no opt-in: one-shot
        ({"arg0": "\udcff"}, 1),  # argv not UTF-8: Python decodes it (surrogateescape)
        ({client.DIR_ENV: "empty"}, 0),  # no server there
        ({"LC_ALL": "en_US.ISO-8859-1"}, 0),  # not UTF-8: another key (file names' codec)
    ],
    ids=["PYTHONPATH", "flags", "no-opt-in", "argv-not-utf8", "no-server", "latin-1"],
)
def test_what_the_native_client_declines_runs_in_python(
    server: Server,
    builder: Builder,
    case: dict[str, str],
    served: int,
    tmp_path: Path,
    locales: Path,
) -> None:
    env = {**server.env, **case, "LOCPATH": str(locales)}
    if env[client.DIR_ENV] == "empty":
        env[client.DIR_ENV] = str(tmp_path / "empty")
    arg0: str | bytes = env.pop("arg0", "a")
    if env[client.ENV] == "":
        del env[client.ENV]
    if isinstance(arg0, str) and arg0 != "a":
        arg0 = os.fsencode(arg0)
    env[client.IDLE_ENV] = "1"  # a server a fallback starts in the background
    before = server.served()
    exe, out = _exe_while_running(server, builder, arg0, env=env)
    assert exe == _python(server.venv)
    shown = arg0 if isinstance(arg0, bytes) else arg0.encode()
    assert out == b"got=go " + shown + b"\n"
    assert server.served() == before + served


def test_a_one_shot_verb_and_a_closed_stdin_run_in_python(server: Server, builder: Builder) -> None:
    before = server.served()
    status = subprocess.run(
        [server.venv / "bin" / "builder", "server", "status"],
        env=server.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"running (pid {server.proc.pid}," in status.stdout
    # A closed stdin: the cwd's fd would take its number; the Python client runs one-shot.
    code, out, _ = server.call(builder, "run", "--rm", IMAGE, "echo", "hi", preexec_fn=_close_0)
    assert (code, out) == (0, b"hi\n")
    assert server.served() == before


def _close_0() -> None:
    os.close(0)


def test_exit_codes_and_output_are_the_one_shot_clis(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN true\nFROBNICATE x\n")
    cases = [
        ("build", str(context)),
        ("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7"),
        ("run", "--rm", IMAGE, "nosuchcommand"),
        ("nosuchverb",),
    ]
    before = server.served()
    one_shot_env = {**server.env, client.ENV: "off"}
    for args in cases:
        assert server.call(builder, *args) == server.call(builder, *args, env=one_shot_env), args
    assert server.served() == before + len(cases)
    assert server.call(builder, *cases[1])[0] == 7


def test_cwd_environment_and_umask_are_the_callers(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, None, {"f": "x"})
    (context / "sub").mkdir()
    (context / "sub" / "My.Dockerfile").write_text(
        "FROM busybox\nARG X\nCOPY f /f\nRUN echo $X > /x\n"
    )
    before = server.served()
    env = {**server.env, "X": "from-env"}
    args = ("build", "-q", "-t", "here", "--build-arg", "X", "-f", "sub/My.Dockerfile")
    proc = server.popen(builder, *args, "--iidfile", "iid", ".", cwd=context, env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert server.served() == before + 1
    assert (context / "iid").read_text() == out.decode().strip()  # in the caller's cwd
    assert server.call(builder, "run", "--rm", "here", "cat", "/x", "/f")[1] == b"from-env\nx"
    umask = server.call(builder, "run", "--rm", IMAGE, "sh", "-c", "umask",
                        preexec_fn=lambda: os.umask(0o027))  # fmt: skip
    assert umask[:2] == (0, b"0027\n")  # the container's, from the caller's
    assert server.served() == before + 3


def test_a_child_killed_by_a_signal_kills_the_client_alike(
    server: Server, builder: Builder
) -> None:
    proc = server.popen(builder, "run", "--rm", IMAGE, "sh", "-c", "echo ready; exec sleep 60")
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert os.readlink(f"/proc/{proc.pid}/exe") == str(_native(server.venv))
    os.kill(server.call_child(), signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("ignored", [False, True], ids=["handled", "started-ignored"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_reach_the_container(
    server: Server, builder: Builder, sig: int, ignored: bool
) -> None:
    name = signal.Signals(sig).name[3:]
    trap = f'trap "echo got-{name}; exit 5" {name}; echo ready; while :; do sleep 0.05; done'
    preexec = (lambda: signal.signal(sig, signal.SIG_IGN)) if ignored else None
    proc = server.popen(builder, "run", "--rm", IMAGE, "sh", "-c", trap, preexec_fn=preexec)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert os.readlink(f"/proc/{proc.pid}/exe") == str(_native(server.venv))
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (5, f"got-{name}\n".encode())


def test_the_server_gone_mid_call_is_125(server: Server, builder: Builder) -> None:
    proc = server.popen(builder, "run", "--rm", IMAGE, "sh", "-c", "echo ready; exec sleep 60")
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    server.proc.kill()
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (125, b"error: the builder server went away\n")


def test_a_stale_alias_falls_back_to_python(server: Server, builder: Builder) -> None:
    alias = server.alias()
    server.proc.kill()  # no cleanup: the alias and the socket stay, nothing listens
    server.proc.wait()
    assert alias.is_symlink()
    env = {**server.env, client.IDLE_ENV: "1"}
    assert server.call(builder, "run", "--rm", IMAGE, "echo", "hi", env=env)[:2] == (0, b"hi\n")


def test_a_clean_exit_removes_the_alias(server: Server) -> None:
    alias = server.alias()
    server.stop()
    assert not alias.is_symlink() and not list(server.folder.glob("*.sock"))


def test_another_installations_native_client_is_refused(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    """A copy of the binary elsewhere (another installation's) names another key; linked to
    this server's socket by hand, the server refuses it, and the call runs in Python."""
    other = tmp_path / "other" / client.NATIVE_CLIENT
    other.parent.mkdir()
    shutil.copy2(_native(server.venv), other)
    link = server.folder / f"{client.socket_name(client.native_key(str(other), 0))}.sock"
    link.symlink_to(server.alias().readlink())
    before = server.served()
    script = server.venv / "bin" / "builder"
    argv = [other, server.venv / "bin" / "python3", script, "--root", builder.root]
    done = subprocess.run(
        [*argv, "run", "--rm", IMAGE, "echo", "hi"], env=server.env, capture_output=True
    )
    assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr
    assert "refused a call: another protocol or code" in server.log.read_text()
    assert server.served() == before + 1  # by the Python client it fell back to


def test_the_native_key_from_another_program_is_refused(server: Server) -> None:
    key = client.native_key(os.path.realpath(_native(server.venv)), 0)
    request = ("run", client.PROTOCOL, key, ["builder", "version"], {}, (None, None, None))
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.connect(str(server.alias()))
        cwd = os.open(".", os.O_PATH)
        fds = client.pack_fds([0, 1, 2, cwd])
        sock.sendmsg([marshal.dumps(request)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        os.close(cwd)
        reply = marshal.loads(sock.recv(client.MAX_MESSAGE))
    assert reply[:2] == ("refused", "the native client's key from another program")


# The request: the native client's against the Python client's for one environment.
_PROBE = """
import marshal, os, sys
out = int(sys.argv.pop(1))
sys.path.append(sys.argv.pop(1))
from builder.cli.client import request
os.write(out, request(sys.argv[1:]))
"""


def _fake_server(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(30)
    return listener


@pytest.mark.parametrize(
    "locale",
    [
        {},
        {"LANG": "C"},
        {"LC_ALL": "C"},
        {"LC_ALL": "C.UTF-8"},
        {"LANG": "C.UTF-8", "LC_CTYPE": "C"},
        {"LANG": "xx_YY.UTF-8"},
        {"LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"},
        {"LANG": "en_US.UTF-8"},
    ],
    ids=[
        "unset",
        "LANG=C",
        "LC_ALL=C",
        "LC_ALL=C.UTF-8",
        "LC_CTYPE=C",
        "unknown",
        "unbuffered",
        "en_US.UTF-8",
    ],
)
@pytest.mark.parametrize("stdio", ["pipes", "pty"])
def test_the_request_is_the_python_clients(
    venv: Path, tmp_path: Path, locale: dict[str, str], stdio: str, locales: Path
) -> None:
    """The stream states (encoding, errors, line buffering, write through), environment and
    argv a fresh Python of this environment would send (CPython's create_stdio and C locale
    coercion, which adds LC_CTYPE), read from what the native client sends a fake server."""
    keep = ("PATH", "HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(locale)
    env.update({client.ENV: "auto", client.DIR_ENV: str(tmp_path), "LOCPATH": str(locales)})
    legacy = locale.get("LC_ALL", locale.get("LC_CTYPE", locale.get("LANG", "C"))) in (
        "C",
        "xx_YY.UTF-8",
    )
    key = client.native_key(os.path.realpath(_native(venv)), int(legacy))
    listener = _fake_server(tmp_path / f"{client.socket_name(key)}.sock")
    script = venv / "bin" / "builder"
    args = ["run", "--rm", "-e", "ü=1", IMAGE]
    if stdio == "pty":
        master, slave = pty.openpty()
        streams: dict[str, Any] = {"stdin": slave, "stdout": slave, "stderr": slave}
    else:
        streams = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen([script, *args], env=env, **streams)
    with listener, listener.accept()[0] as conn:
        sent, ancillary, _, _ = conn.recvmsg(client.MAX_MESSAGE, socket.CMSG_SPACE(16))
        for fd in client.unpack_fds(ancillary[0][2]):  # its stdio would stay open in us
            os.close(fd)
        conn.send(marshal.dumps(("exit", "code", 0)))
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    purelib = str(_native(venv).parents[2])
    r, w = os.pipe()
    # Through sh, as bin/builder starts the Python client: the shell exports PWD.
    python = ["/bin/sh", "-c", 'exec "$@"', "sh", venv / "bin" / "python3", "-S", "-c", _PROBE,
              str(w), purelib, str(script), *args]  # fmt: skip
    probe = subprocess.Popen(python, env=env, pass_fds=(w,), **streams)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        expected = marshal.loads(f.read())
    probe.communicate(timeout=30)
    if stdio == "pty":
        os.close(slave)
        os.close(master)
    native = marshal.loads(sent)
    assert native[:2] == ("run", client.PROTOCOL) and native[2] == key
    assert native[3:] == expected[3:]
    assert list(native[4].items()) == list(expected[4].items())  # the same order too


def test_the_wheel_carries_the_client_and_is_platform_specific(venv: Path) -> None:
    (wheel,) = (venv / "wheels").glob("*.whl")
    assert re.fullmatch(r"builder-[^-]+-py3-none-linux_[a-z0-9_]+\.whl", wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(f"builder/cli/{client.NATIVE_CLIENT}")
    assert (info.external_attr >> 16) & 0o111  # executable once installed


def test_without_a_compiler_the_wheel_is_pure_python(tmp_path: Path) -> None:
    env = {**os.environ, "CC": "/bin/false"}
    env.pop("PYTHONPATH", None)
    wheel = installed.build_wheel(tmp_path / "source", tmp_path / "wheels", env=env)
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "builder/cli/client.py" in archive.namelist()
        assert f"builder/cli/{client.NATIVE_CLIENT}" not in archive.namelist()


def test_a_stale_server_refuses_and_the_call_runs_in_python(
    server: Server, builder: Builder
) -> None:
    """A changed file of the installed package: the server refuses the native request (and
    stops), the native client execs the Python client, which runs the call one-shot."""
    module = _native(server.venv).parent / "netflags.py"
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    try:
        exe, out = _exe_while_running(server, builder, env={**server.env, client.IDLE_ENV: "1"})
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (exe, out) == (_python(server.venv), b"got=go a\n")
    assert "refused a call: stale" in server.log.read_text()
    server.proc.wait(timeout=15)  # stale: it stops taking calls and exits


def test_another_users_server_is_not_sent_the_call(venv: Path, builder: Builder) -> None:
    """uid 65534 reaches root's server (dir and socket opened up, so only the peer check
    stands in the way): the native client sends nothing (the server refuses no request) and
    execs the Python client (which this user cannot run here: /root holds the interpreter)."""
    with tempfile.TemporaryDirectory(prefix="builder-uid-") as top:
        running = Server(venv, Path(top) / "server")
        try:
            for path in (Path(top), running.folder):
                os.chmod(path, 0o711)
            os.chmod(running.alias().resolve(), 0o777)
            env = {**running.env, "HOME": "/nonexistent"}
            # The binary itself: bin/builder, finding no python3 it may run beside it
            # (/root's), would not try it.
            script = venv / "bin" / "builder"
            done = subprocess.run(
                [_native(venv), venv / "bin" / "python3", script, "run", "--rm", IMAGE, "true"],
                env=env, user=65534, group=65534, extra_groups=[], capture_output=True,
                cwd="/",
            )  # fmt: skip
            log = running.log.read_text()
        finally:
            running.stop()
    assert done.returncode == 127 and b"python3: Permission denied" in done.stderr
    # Had it sent its request, the server would refuse it by uid. (Its hang-up with nothing
    # sent is logged as "no request" if the server reads it before we read the log.)
    assert "is not the server's" not in log, log
