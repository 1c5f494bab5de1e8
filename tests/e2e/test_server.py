"""The warm server behind the thin client (issue 9): through the real CLI, the same
outputs, statuses, signals and clean-up as one-shot, and the refusals that keep it safe.

Each test starts `builder server` in the foreground with a private socket dir
($BUILDER_SERVER_DIR) and sets $BUILDER_SERVER=auto in the environment every CLI call of
the test inherits. `builder server status` counts the calls the server ran, so a test
knows whether a call went through the server or fell back to one-shot.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import client
from builder.cli import server as server_module
from builder.config import config_path
from tests.e2e.runtime_support import kill_leftovers, mounts_with, popen, wait_gone
from tests.e2e.support import REPO, Builder, make_context
from tests.e2e.test_network import marker  # noqa: F401 - a fixture
from tests.e2e.test_rootless import SYSTEM_PYTHON, WITH_RANGE, Kit, kit  # noqa: F401 - kit: a fixture

IMAGE = "busybox:latest"


class Server:
    def __init__(self, folder: Path, proc: subprocess.Popen[bytes]) -> None:
        self.folder = folder
        self.proc = proc

    def served(self) -> int:
        """How many calls the server has run (it must be running)."""
        done = subprocess.run(
            [sys.executable, "-m", "builder", "server", "status"],
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"(\d+) served", done.stdout)
        assert found, done.stdout
        return int(found.group(1))

    def children(self) -> list[int]:
        pid = self.proc.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def call_child(self) -> int:
        """The one child running a call: not the spare forked for the next call, which
        waits in the server's cwd, /."""
        (child,) = [c for c in self.children() if os.readlink(f"/proc/{c}/cwd") != "/"]
        return child


def _start(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder", "server", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not list(folder.glob("*.sock")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


@pytest.fixture
def server_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "server"
    monkeypatch.setenv(client.DIR_ENV, str(folder))
    monkeypatch.setenv(client.IDLE_ENV, "20")  # a server a call starts in the background
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return folder


@pytest.fixture
def server(server_dir: Path, builder: Builder, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    proc = _start(server_dir, "--idle", "300")
    monkeypatch.setenv(client.ENV, "auto")
    try:
        yield Server(server_dir, proc)
    finally:
        _stop(proc)
        kill_leftovers(builder)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the server exits once its calls are done; a call a failed test left
    hanging would hold it, so SIGKILL after a while (its children die with it)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def _one_shot_env() -> dict[str, str]:
    return {client.ENV: "off"}


def test_build_gives_the_same_image_and_output(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    recipe = "FROM busybox\nRUN echo hi > /hi\nCOPY f /f\nENV A=b\n"
    context = make_context(tmp_path, recipe, {"f": "x"})
    before = server.served()
    served = builder("build", "-q", "--no-cache", "--source-date-epoch", "1", context)
    assert server.served() == before + 1  # it ran there, not one-shot
    one_shot = builder(
        "build", "-q", "--no-cache", "--source-date-epoch", "1", context, env=_one_shot_env()
    )
    assert server.served() == before + 1
    assert served.stdout == one_shot.stdout and served.stdout.startswith("sha256:")
    assert (served.stderr, served.status) == (one_shot.stderr, one_shot.status)


def test_errors_and_exit_codes_are_the_same(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN true\nFROBNICATE x\n")
    cases = [
        ("build", context),
        ("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7"),
        ("run", "--rm", IMAGE, "nosuchcommand"),
        ("nosuchverb",),
    ]
    before = server.served()
    for args in cases:
        served = builder(*args, check=False)
        one_shot = builder(*args, check=False, env=_one_shot_env())
        assert (served.status, served.stdout, served.stderr) == (
            one_shot.status,
            one_shot.stdout,
            one_shot.stderr,
        ), args
    assert server.served() == before + len(cases)
    assert builder(*cases[0], check=False).stderr.startswith("error: Dockerfile:3")
    assert builder(*cases[1], check=False).status == 7


def test_stdin_reaches_run_i(server: Server, builder: Builder, tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.write_text("piped\n")
    with data.open("rb") as f:
        out, _ = popen(builder, "run", "--rm", "-i", IMAGE, "cat", stdin=f).communicate(timeout=60)
    assert out == b"piped\n"
    proc = popen(
        builder,
        "run",
        "--rm",
        "-i",
        IMAGE,
        "sh",
        "-c",
        "read l; echo got=$l",
        stdin=subprocess.PIPE,
    )
    out, _ = proc.communicate(b"line\n", timeout=60)
    assert out == b"got=line\n"


def test_a_closed_stdin_runs_one_shot(server: Server, builder: Builder) -> None:
    """The std fds are checked before the connection is made: else the socket takes the
    closed fd's number, passes the check, and goes to the call as its stdin."""
    before = server.served()
    proc = popen(builder, "run", "--rm", IMAGE, "echo", "hi", preexec_fn=lambda: os.close(0))
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, b"hi\n"), err
    assert server.served() == before


def test_a_terminal_is_the_callers(server: Server, builder: Builder) -> None:
    from tests.e2e.test_run_flags import _on_a_terminal

    before = server.served()
    out, status = _on_a_terminal(builder, "run", "--rm", "-t", IMAGE, "stty", "size")
    assert (out, status) == (b"33 77\r\r\n", 0)
    script = "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done"
    out, status = _on_a_terminal(
        builder, "run", "--rm", "-t", IMAGE, "sh", "-c", script, resize_after=b"ready"
    )
    assert (out, status) == (b"ready\r\r\n40 100\r\r\n", 0)  # SIGWINCH forwarded
    assert server.served() == before + 2


def _ignoring(sig: int) -> None:
    signal.signal(sig, signal.SIG_IGN)


@pytest.mark.parametrize("ignored", [False, True], ids=["handled", "started-ignored"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT])
def test_signals_reach_the_container(
    server: Server, builder: Builder, sig: int, ignored: bool
) -> None:
    """Also a signal the client was started ignoring (nohup; a non-interactive shell's
    background job ignores INT and QUIT): the one-shot CLI forwards it, as docker does."""
    name = signal.Signals(sig).name[3:]
    trap = f'trap "echo got-{name}; exit 5" {name}; echo ready; while :; do sleep 0.05; done'
    preexec = (lambda: _ignoring(sig)) if ignored else None
    proc = popen(builder, "run", "--rm", IMAGE, "sh", "-c", trap, preexec_fn=preexec)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (5, f"got-{name}\n".encode())


def test_a_killed_client_leaves_nothing(server: Server, builder: Builder) -> None:
    token = f"h9server-{os.getpid()}-{time.monotonic_ns()}"
    before = server.served()
    proc = popen(builder, "run", "--rm", IMAGE, "sh", "-c", f"echo ready; sleep 60; : {token}")
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert server.served() == before + 1
    proc.kill()
    proc.communicate(timeout=30)
    assert wait_gone(token) == []  # the server killed the CLI, its supervisor the container
    deadline = time.monotonic() + 10
    while mounts_with(str(builder.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_with(str(builder.root)) == []


def test_a_child_killed_by_a_signal_kills_the_client_alike(
    server: Server, builder: Builder
) -> None:
    proc = popen(builder, "run", "--rm", IMAGE, "sh", "-c", "echo ready; exec sleep 60")
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    child = server.call_child()
    os.kill(child, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # the wait status of a killed one-shot CLI


def test_the_child_reports_its_own_exit(server: Server, builder: Builder) -> None:
    """The child tells the client its status as it exits, a few ms before the server has
    reaped it: with the server stopped, the call still ends, with its status and output."""
    script = "echo ready; read go; echo done; exit 3"
    proc = popen(builder, "run", "--rm", "-i", IMAGE, "sh", "-c", script, stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    server.proc.send_signal(signal.SIGSTOP)
    try:
        out, err = proc.communicate(b"go\n", timeout=30)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert (proc.returncode, out, err) == (3, b"done\n", b"")


def _wait_for_the_spare(server: Server) -> int:
    deadline = time.monotonic() + 30
    while not server_module._ask(("status",))[4]:  # type: ignore[index]  # the spare is ready
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (spare,) = server.children()
    return spare


def test_a_spare_child_ends_on_sigterm(server: Server) -> None:
    """Not with the server's handler (which only notes a stop): a service manager stopping
    the unit signals every process of it."""
    spare = _wait_for_the_spare(server)
    os.kill(spare, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while spare in server.children():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_call_runs_in_the_child_forked_ahead_for_it(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    """Between calls the server keeps one child forked and warmed for the next call (in the
    server's cwd, /); the call runs in that very process, and a call that comes while one
    runs is forked for itself."""
    spare = _wait_for_the_spare(server)
    assert os.readlink(f"/proc/{spare}/cwd") == "/"
    script = "echo ready; read go; echo done"
    first = popen(builder, "run", "--rm", "-i", IMAGE, "sh", "-c", script, stdin=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline() == b"ready\n"
    assert os.readlink(f"/proc/{spare}/cwd") == os.getcwd()  # the caller's: it is the call
    second = popen(builder, "run", "--rm", "-i", IMAGE, "sh", "-c", script, stdin=subprocess.PIPE)
    assert second.stdout is not None and second.stdout.readline() == b"ready\n"
    assert len(server.children()) == 2
    for proc in (first, second):
        assert proc.communicate(b"go\n", timeout=30) == (b"done\n", b"")
        assert proc.returncode == 0


def test_cwd_and_environment_are_the_callers(
    server: Server, builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, None, {"f": "x"})
    (context / "sub").mkdir()
    (context / "sub" / "My.Dockerfile").write_text("FROM busybox\nCOPY f /f\n")
    before = server.served()
    argv = [
        sys.executable,
        "-m",
        "builder",
        "build",
        "-q",
        "-t",
        "cwd",
        "-f",
        "sub/My.Dockerfile",
        ".",
    ]
    env = {**os.environ, "BUILDER_ROOT": str(builder.root)}
    done = subprocess.run(argv, cwd=context, env=env, capture_output=True, text=True, check=True)
    assert server.served() == before + 1
    # The image is in BUILDER_ROOT's store, built from this cwd's files.
    inspected = builder("inspect", "cwd", env=_one_shot_env()).stdout
    assert done.stdout.strip() in inspected
    # $X of the caller, not the server's: --build-arg X takes it from the environment.
    (context / "Envfile").write_text("FROM busybox\nARG X\nRUN echo $X > /x\n")
    builder("build", "-q", "-t", "env", "--build-arg", "X", "-f", context / "Envfile", context,
            env={"X": "from-env"})  # fmt: skip
    assert builder("run", "--rm", "env", "cat", "/x").stdout == "from-env\n"
    assert server.served() == before + 3


def test_another_uid_is_refused(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Let uid 65534 reach the socket, so that only the peer check stands in its way: a
    # socket dir under /tmp (pytest's own base, /tmp/pytest-of-root, is 0700).
    with tempfile.TemporaryDirectory(prefix="builder-uid-") as top:
        folder = Path(top) / "server"
        monkeypatch.setenv(client.DIR_ENV, str(folder))
        proc = _start(folder, "--idle", "300")
        try:
            (sock,) = folder.glob("*.sock")
            for path in (Path(top), folder):
                os.chmod(path, 0o711)
            os.chmod(sock, 0o777)
            probe = (
                "import marshal, socket, sys;"
                " s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET);"
                f" s.connect({str(sock)!r}); s.send(marshal.dumps(('status',)));"
                " print(marshal.loads(s.recv(65536)))"
            )
            done = subprocess.run(
                ["/usr/bin/python3", "-c", probe], user=65534, capture_output=True, text=True
            )
        finally:
            _stop(proc)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('refused', \"uid 65534 is not the server's\")"


def test_a_changed_code_tree_is_refused_and_the_call_runs_one_shot(
    server: Server, builder: Builder
) -> None:
    served = server.served()
    module = REPO / "builder" / "cli" / "netflags.py"
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    try:
        done = builder("run", "--rm", IMAGE, "echo", "one-shot")
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert done.stdout == "one-shot\n"
    server.proc.wait(timeout=15)  # stale: it stops taking calls and exits (idle: 300 s)
    assert (
        served >= 0
        and not (server.folder / f"{client.socket_name(client.code_key())}.sock").exists()
    )


def test_an_idle_server_exits(server_dir: Path) -> None:
    proc = _start(server_dir, "--idle", "1")
    try:
        proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 0
    assert list(server_dir.glob("*.sock")) == []


def test_no_server_without_the_opt_in(server_dir: Path, builder: Builder) -> None:
    builder("run", "--rm", IMAGE, "true")
    assert not server_dir.exists()  # no call started one
    proc = _start(server_dir)
    try:
        builder("run", "--rm", IMAGE, "true")
        assert Server(server_dir, proc).served() == 0
    finally:
        _stop(proc)


def test_auto_starts_a_server_for_the_next_call(
    server_dir: Path, builder: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(client.ENV, "auto")
    start = time.monotonic()
    assert builder("run", "--rm", IMAGE, "echo", "first").stdout == "first\n"
    assert time.monotonic() - start < 60  # the background server holds none of our pipes
    deadline = time.monotonic() + 60
    while not list(server_dir.glob("*.sock")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)  # bound, and listening
    assert builder("run", "--rm", IMAGE, "echo", "second").stdout == "second\n"
    status = subprocess.run(
        [sys.executable, "-m", "builder", "server", "status"], capture_output=True, text=True
    )
    assert " 1 served" in status.stdout
    subprocess.run([sys.executable, "-m", "builder", "server", "stop"], check=True)


def test_the_config_file_opts_in(
    server: Server, builder: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(client.ENV)
    config = tmp_path / "builder.toml"
    config.write_text('[cli]\nserver = "auto"\n')
    before = server.served()
    builder("run", "--rm", IMAGE, "true", env={"BUILDER_CONFIG": str(config)})
    assert server.served() == before + 1


def test_the_client_finds_the_config_file_where_builder_config_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for env in ({"BUILDER_CONFIG": str(tmp_path / "x.toml")}, {}):
        monkeypatch.delenv("BUILDER_CONFIG", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert client.config_file() == str(config_path()[0])


def test_the_client_names_its_package_dir_as_os_path_would() -> None:
    """The server's identity and the path a started server imports builder from; the
    client finds it without os.path (an import it does not pay for)."""
    import builder

    assert client.package_dir() == os.path.dirname(os.path.abspath(builder.__file__))


def test_the_client_imports_almost_nothing_before_the_server_runs_the_call(
    server: Server, builder: Builder
) -> None:
    """What the client process itself imports (-X importtime goes to its stderr; the
    server's child was not started with it): beyond the interpreter's own start, only the
    client and _socket (_signal is loaded at start)."""
    argv = [sys.executable, "-X", "importtime", "-m", "builder", "--root", str(builder.root)]
    before = server.served()
    done = subprocess.run([*argv, "run", "--rm", IMAGE, "true"], capture_output=True, text=True)
    assert done.returncode == 0 and server.served() == before + 1, done.stderr
    # `-m` costs runpy and its imports; the console script does not
    plain = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import runpy"], capture_output=True, text=True
    )

    def imported(stderr: str) -> set[str]:
        lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
        return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}

    extra = imported(done.stderr) - imported(plain.stderr)
    assert sorted(extra) == [
        "_socket",
        "builder",
        "builder.cli",
        "builder.cli.client",
    ]


def test_the_launchers_client_without_site_is_served_by_the_server_with_it(
    server: Server, builder: Builder
) -> None:
    """bin/builder runs the client with -S, and the server it finds (or starts) runs with
    site (it imports the CLI's dependencies): the flag must not make them strangers, or
    every call would run one-shot."""
    argv = [sys.executable, "-S", str(REPO / "bin" / "builder"), "--root", str(builder.root)]
    before = server.served()
    done = subprocess.run([*argv, "run", "--rm", IMAGE, "true"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert server.served() == before + 1


def test_runs_seccomp_program_is_ready_in_the_server(server: Server, builder: Builder) -> None:
    """The server compiles (or loads) the default seccomp program once: a call's child does
    not read it from the store's cache, nor write it there, as a one-shot call does."""
    cache = builder.root / "seccomp"
    shutil.rmtree(cache, ignore_errors=True)  # a cache: any file may go
    before = server.served()
    assert builder("run", "--rm", IMAGE, "true").status == 0
    assert server.served() == before + 1
    assert list(cache.glob("*.bpf")) == []
    assert builder("run", "--rm", IMAGE, "true", env=_one_shot_env()).status == 0
    assert len(list(cache.glob("*.bpf"))) == 1  # the check above could see one


def test_the_child_joins_the_clients_cgroups(server: Server, builder: Builder) -> None:
    """A CI job's limits and accounting follow the call into the server's child: v1
    hierarchies and the v2 one (here the hybrid layout, v2 at /sys/fs/cgroup/unified)."""
    name = f"h9server-test-{os.getpid()}"
    made = []
    for mount in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(f"{mount}/cgroup.procs") and len(made) < 2:
            os.mkdir(f"{mount}/{name}")
            made.append(f"{mount}/{name}")
    assert made, "no cgroup hierarchy to test with"

    def join() -> None:
        for cgroup in made:
            Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))

    try:
        proc = popen(
            builder, "run", "--rm", IMAGE, "sh", "-c", "echo ready; sleep 60", preexec_fn=join
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        child = server.call_child()
        lines = Path(f"/proc/{child}/cgroup").read_text().splitlines()
        assert len([line for line in lines if line.endswith(f":/{name}")]) == len(made), lines
        proc.kill()
        proc.communicate(timeout=30)
        wait_gone(name)
    finally:
        for cgroup in made:
            deadline = time.monotonic() + 10
            while Path(cgroup, "cgroup.procs").read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            os.rmdir(cgroup)


def test_one_server_per_socket(server: Server) -> None:
    start = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "builder", "server"], capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith("error: a builder server is running already in ")
    assert time.monotonic() - start < 30  # it gave up before importing everything
    assert server.proc.poll() is None


def test_keys_and_ctrl_c_on_a_terminal_reach_the_container(
    server: Server, builder: Builder
) -> None:
    """`run -it`: the child puts the client's own terminal in raw mode and relays it."""
    from tests.e2e.test_run_flags import test_it_relays_keys_and_ctrl_c_reaches_the_container

    before = server.served()
    test_it_relays_keys_and_ctrl_c_reaches_the_container(builder)
    assert server.served() == before + 1


def test_every_signal_dockers_sig_proxy_forwards_reaches_the_container(
    server: Server, builder: Builder
) -> None:
    from tests.e2e import test_run_flags

    before = server.served()
    test_run_flags.test_every_signal_dockers_sig_proxy_forwards_reaches_the_container(builder, [])
    assert server.served() == before + 1


def test_a_client_with_other_interpreter_flags_is_not_served(
    server: Server, builder: Builder
) -> None:
    before = server.served()
    argv = [sys.executable, "-O", "-m", "builder", "--root", str(builder.root)]
    done = subprocess.run(
        [*argv, "run", "--rm", IMAGE, "echo", "hi"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert server.served() == before  # -O has a server of its own (started now, for later)
    deadline = time.monotonic() + 60
    while len(list(server.folder.glob("*.sock"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    subprocess.run([*argv, "server", "stop"], check=True, capture_output=True)


def test_a_user_is_served_by_a_server_of_their_own(kit: Kit) -> None:  # noqa: F811
    """Rootless: the user's server runs as the user, in the initial user namespace like its
    clients; its child enters the user's own namespace as a one-shot call does."""
    user = WITH_RANGE
    account = pwd.getpwnam(user)
    base = Path(tempfile.mkdtemp(dir=kit.path))
    os.chown(base, account.pw_uid, account.pw_gid)
    env = {client.ENV: "auto", client.DIR_ENV: str(base / "server"), client.IDLE_ENV: "60"}
    home = account.pw_dir
    proc = subprocess.Popen(
        ["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"USER={user}",
         f"PYTHONPATH={kit.path}", *(f"{k}={v}" for k, v in env.items()),
         str(SYSTEM_PYTHON), "-m", "builder", "server"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
    )  # fmt: skip
    pid = 0
    try:
        deadline = time.monotonic() + 60
        while not list((base / "server").glob("*.sock")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        status = kit.builder(user, "server", "status", env=env).stdout
        pid = int(re.findall(r"pid (\d+)", status)[0])
        assert os.stat(f"/proc/{pid}").st_uid == account.pw_uid
        kit.builder(user, "import", kit.base, "busybox:latest", env=env)
        ran = kit.builder(user, "run", "--rm", "--network", "none", "busybox", "id", "-u", env=env)
        assert ran.stdout == "0\n"
        assert " 2 served" in kit.builder(user, "server", "status", env=env).stdout
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("verb", ["run", "build"])
def test_no_helper_outlives_a_killed_client(
    server: Server,
    builder: Builder,
    tmp_path: Path,
    marker: str,  # noqa: F811 - the fixture
    verb: str,
) -> None:
    """test_network's killed-CLI test (a RUN step's or a container's slirp4netns must not
    outlive it), through the server: the client is SIGKILLed, the server kills its child."""
    from tests.e2e import test_network

    before = server.served()
    test_network.test_no_helper_outlives_a_killed_cli(builder, tmp_path, marker, verb)
    assert server.served() == before + 1


def test_login_prompts_in_the_callers_own_process(server: Server, builder: Builder) -> None:
    """getpass opens /dev/tty, which the server's child has not: login stays one-shot."""
    before = server.served()
    builder("login", "-u", "u", "--password-stdin", "127.0.0.1:9", check=False)
    assert server.served() == before
