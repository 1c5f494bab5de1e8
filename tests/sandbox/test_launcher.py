"""The launcher (builder/sandbox/launcher.py): a sandbox's supervisor is a fork of a small
Python, not of the caller; where none is ready, or the plan cannot go, the caller forks it
as before. Real processes: parents and fds read from /proc."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import DEVNULL, OverlayRoot, SandboxSpec, call, launcher, process, run
from builder.sandbox.handoff import Handoff
from builder.sandbox.spec import ExecFailed, NetworkMode
from tests.sandbox.records import lazy_records, unresolved_libc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the launcher serves host root")


@pytest.fixture
def ready() -> Iterator[launcher.Launcher]:
    """This process's launcher, ready; none again afterwards (the other tests fork)."""
    launcher.begin()
    found = launcher._CURRENT
    assert found is not None
    deadline = time.monotonic() + 30
    while not found.ready():
        assert time.monotonic() < deadline, "the launcher did not start"
        time.sleep(0.01)
    yield found
    launcher._CURRENT = None
    found.sock.close()
    os.close(found.ready_r)
    deadline = time.monotonic() + 10
    while _alive(found.pid):  # it ends once no caller holds its socket
        assert time.monotonic() < deadline, "the launcher outlived its callers"
        time.sleep(0.01)


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def _supervisor_parent(spec: SandboxSpec, run_it: Callable[..., int] = run) -> tuple[int, int]:
    """Run `spec` (its command waits for stdin's EOF); the parent of its supervisor, read
    once the command runs, and the status."""
    stdin_r, stdin_w = os.pipe()
    seen: list[int] = []

    def started(pid1: int) -> None:
        seen.append(_ppid(_ppid(pid1)))  # pid 1's parent is the supervisor
        os.write(stdin_w, b"\n")

    try:
        status = run_it(
            SandboxSpec(spec.root, ("sh", "-c", "read x; exit 3"), stdin=stdin_r),
            started=started,
        )
    finally:
        os.close(stdin_r)
        os.close(stdin_w)
    assert len(seen) == 1
    return seen[0], status


def test_supervisor_is_the_launchers_fork(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    parent, status = _supervisor_parent(SandboxSpec(overlay(), ()))
    assert (parent, status) == (ready.pid, 3)
    assert ready.pid not in _children(os.getpid())  # a server counts its children
    rss = Path(f"/proc/{ready.pid}/statm").read_text().split()[1]
    ours = Path("/proc/self/statm").read_text().split()[1]
    assert int(rss) < int(ours)  # a small Python: the point of it


def test_without_a_launcher_we_fork(
    overlay: Callable[..., OverlayRoot], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "_CURRENT", None)  # (a build before may have begun one)
    assert _supervisor_parent(SandboxSpec(overlay(), ())) == (os.getpid(), 3)


def test_a_launcher_gone_falls_back_to_our_fork(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    os.kill(ready.pid, signal.SIGKILL)
    while _alive(ready.pid):
        time.sleep(0.01)
    assert launcher.current() is ready  # (it said ready before it died)
    assert _supervisor_parent(SandboxSpec(overlay(), ())) == (os.getpid(), 3)


def test_a_call_is_forked_by_us(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    """A `call`'s function cannot be sent: we fork its supervisor, and it runs."""
    go_r, go_w = os.pipe()
    seen: list[tuple[int, int]] = []

    def body() -> int:
        os.read(go_r, 1)
        return 4

    def ours() -> set[int]:  # but the launcher, and supervisors of before still exiting
        return set(_children(os.getpid())) - before

    before = {ready.pid, *_children(os.getpid())}
    spares = {_spare(ready)}

    def watch() -> None:  # while the body waits: whose child is the supervisor?
        try:
            deadline = time.monotonic() + 10
            while not ours() and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append((len(ours()), len(set(_children(ready.pid)) - spares)))
        finally:
            os.write(go_w, b"1")

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        spec = SandboxSpec(overlay(), ("body",), stdin=DEVNULL)
        assert call(spec, body, keep_fds=(go_r,)) == 4
    finally:
        watcher.join()
        os.close(go_r)
        os.close(go_w)
    assert seen == [(1, 0)]


def _spare(ready: launcher.Launcher) -> int:
    """The launcher's supervisor forked ahead of the next request (it forks it once ready)."""
    deadline = time.monotonic() + 10
    while not (children := _children(ready.pid)):
        assert time.monotonic() < deadline, "the launcher forked no spare"
        time.sleep(0.01)
    assert len(children) == 1, children
    return children[0]


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def test_a_request_is_run_by_the_spare_forked_ahead(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    """The supervisor is the launcher's spare, forked (and its pages copied) before the
    request came; the launcher forks the next one."""
    spare = _spare(ready)
    time.sleep(0.5)  # its copy (~10 ms): a request that comes sooner is forked instead
    stdin_r, stdin_w = os.pipe()
    seen: list[int] = []

    def started(pid1: int) -> None:  # (pid 1 waits for stdin's EOF meanwhile)
        seen.append(_ppid(pid1))
        os.close(stdin_w)

    try:
        spec = SandboxSpec(overlay(), ("sh", "-c", "read x"), stdin=stdin_r)
        assert run(spec, started=started) == 1  # read's status at EOF
    finally:
        os.close(stdin_r)
    assert seen == [spare]
    deadline = time.monotonic() + 10
    while _children(ready.pid) in ([], [spare]):
        assert time.monotonic() < deadline, "no next spare"
        time.sleep(0.01)


def test_a_sandbox_run_ahead_has_the_next_supervisor_forked_as_it_ends(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    """A build's RUN step (`ahead`): as it ends, the launcher forks the next step's
    supervisor, which runs the next request; not only once idle (a build leaves it no
    idle time: here another sandbox runs meanwhile, and keeps it from being idle)."""
    _spare(ready)
    time.sleep(0.5)  # (its copy of its pages: it runs the sandbox that holds the launcher)
    stdin_r, stdin_w = os.pipe()
    busy: list[int] = []

    def hold() -> None:
        spec = SandboxSpec(overlay(), ("sh", "-c", "read x"), stdin=stdin_r)
        run(spec, started=lambda pid1: busy.append(_ppid(pid1)))

    holding = threading.Thread(target=hold)
    holding.start()
    try:
        deadline = time.monotonic() + 10
        while not busy:
            assert time.monotonic() < deadline, "the holding sandbox did not start"
            time.sleep(0.01)
        time.sleep(0.2)  # (no spare: a sandbox runs)
        assert _children(ready.pid) == busy
        ran: list[int] = []
        spec = SandboxSpec(overlay(), ("true",))
        assert run(spec, started=lambda pid1: ran.append(_ppid(pid1)), ahead=True) == 0
        deadline = time.monotonic() + 10
        while len(others := set(_children(ready.pid)) - {*busy, *ran}) != 1:
            assert time.monotonic() < deadline, "no supervisor forked ahead"
            time.sleep(0.01)
        time.sleep(0.5)  # (its copy of its pages: a request that comes sooner is forked)
        supervisor: list[int] = []
        spec = SandboxSpec(overlay(), ("true",))
        assert run(spec, started=lambda pid1: supervisor.append(_ppid(pid1))) == 0
        assert supervisor == list(others)
    finally:
        os.close(stdin_w)
        holding.join()
        os.close(stdin_r)


def _ahead(ready: launcher.Launcher) -> tuple[int, int]:
    """The launcher's spare and the pid 1 it forked ahead, once there."""
    deadline = time.monotonic() + 10
    while True:
        children = _children(ready.pid)
        if len(children) == 1 and (grandchildren := _children(children[0])):
            return children[0], grandchildren[0]
        assert time.monotonic() < deadline, "no spare with a pid 1 forked ahead"
        time.sleep(0.01)


@pytest.mark.parametrize("network", ["none", "host", "private"])
def test_pid1_is_forked_ahead_by_the_spare(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher, network: NetworkMode
) -> None:
    """Once a sandbox of a shape ran, the spare makes the next one's namespaces and forks
    its pid 1 before the request; the sandbox then runs as one forked on request: its
    namespaces its own (not the caller's nor the launcher's), its user mapped, the
    caller's umask, the private network's device made by its helper."""
    _spare(ready)  # forked before any request: it makes nothing ahead
    time.sleep(0.5)  # (its copy of its pages: it serves the first request)
    assert run(SandboxSpec(overlay(), ("true",), network=network)) == 0  # (its shape)
    spare, pid1 = _ahead(ready)
    time.sleep(0.5)  # (the spare's and pid 1's copies of their pages)
    assert Path(f"/proc/{pid1}/ns/pid").stat().st_ino != Path(f"/proc/{spare}/ns/pid").stat().st_ino
    out_r, out_w = os.pipe()
    seen: list[int] = []
    script = (
        "echo $$ $(cat /proc/self/uid_map | wc -l) $(umask); "
        "for n in net uts ipc cgroup; do readlink /proc/self/ns/$n; done; "
        "ip -o -4 addr | grep -c 10.0.2.100/24"
    )
    old = os.umask(0o027)
    try:
        spec = SandboxSpec(overlay(), ("sh", "-c", script), stdout=out_w, network=network)
        assert run(spec, started=seen.append) == (0 if network == "private" else 1)
    finally:
        os.umask(old)
        os.close(out_w)
    with os.fdopen(out_r) as out:
        first, *namespaces, addresses, _ = out.read().split("\n")
    assert seen == [pid1]
    assert first.split() == ["1", "1", "0027"]
    assert addresses == ("1" if network == "private" else "0")  # slirp4netns gave pid 1 its address
    for kind, inside in zip(("net", "uts", "ipc", "cgroup"), namespaces, strict=False):
        mine = os.readlink(f"/proc/self/ns/{kind}")
        theirs = os.readlink(f"/proc/{ready.pid}/ns/{kind}")
        if kind == "net" and network == "host":
            assert inside == mine
        else:
            assert inside not in (mine, theirs), kind


def test_a_spare_of_another_shape_is_dropped(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    """A request whose namespaces differ from those a spare made ahead (the host's network
    after `none`'s) is forked as before, in the namespaces it asks for; the spare and its
    pid 1 end, and the next spare is of the new shape."""
    _spare(ready)
    time.sleep(0.5)
    assert run(SandboxSpec(overlay(), ("true",))) == 0  # `none`: its own net namespace
    spare, pid1 = _ahead(ready)
    time.sleep(0.5)
    out_r, out_w = os.pipe()
    seen: list[int] = []
    try:
        spec = SandboxSpec(
            overlay(), ("readlink", "/proc/self/ns/net"), stdout=out_w, network="host"
        )
        assert run(spec, started=lambda p: seen.append(_ppid(p))) == 0
    finally:
        os.close(out_w)
    with os.fdopen(out_r) as out:
        assert out.read().strip() == os.readlink("/proc/self/ns/net")
    assert seen != [spare]
    deadline = time.monotonic() + 10
    while _alive(spare) or _alive(pid1):
        assert time.monotonic() < deadline, "the dropped spare or its pid 1 lives on"
        time.sleep(0.01)
    host_spare, _ = _ahead(ready)  # (the host's network: no net namespace of its own)
    assert os.readlink(f"/proc/{host_spare}/ns/net") == os.readlink("/proc/self/ns/net")


def test_killed_launcher_leaves_no_spare_nor_pid1(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    """The spare and the pid 1 it forked ahead end with the launcher: a killed server
    leaves neither behind."""
    _spare(ready)
    time.sleep(0.5)
    assert run(SandboxSpec(overlay(), ("true",))) == 0
    spare, pid1 = _ahead(ready)
    os.kill(ready.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(spare) or _alive(pid1):
        assert time.monotonic() < deadline, "a spare or its pid 1 outlived the launcher"
        time.sleep(0.01)


def test_killed_caller_leaves_no_launcher_spare_nor_pid1(
    overlay: Callable[..., OverlayRoot],
) -> None:
    """A killed server (here a fork of ours with a launcher of its own, killed once its
    launcher keeps a spare with a pid 1 forked ahead): its launcher ends, and the spare
    and pid 1 with it."""
    report_r, report_w = os.pipe()
    root, again = overlay(), overlay()
    server = os.fork()
    if server == 0:  # pragma: no cover - the child
        try:
            launcher._CURRENT = None
            launcher.begin()
            while launcher.current() is None:
                time.sleep(0.01)
            assert run(SandboxSpec(root, ("true",)), ahead=True) == 0
            assert run(SandboxSpec(again, ("true",)), ahead=True) == 0  # (one of its shape)
            found = launcher.current()
            assert found is not None
            os.write(report_w, str(found.pid).encode())
            time.sleep(3600)
        finally:
            os._exit(0)
    os.close(report_w)
    try:
        pid = int(os.read(report_r, 32) or 0)
        assert pid > 0
        deadline = time.monotonic() + 10
        while not (len(spares := _children(pid)) == 1 and _children(spares[0])):
            assert time.monotonic() < deadline, "no spare with a pid 1 forked ahead"
            time.sleep(0.01)
        made = [pid, *spares, *_children(spares[0])]
    finally:
        os.kill(server, signal.SIGKILL)
        os.waitpid(server, 0)
        os.close(report_r)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in made):
        assert time.monotonic() < deadline, "the launcher, its spare or pid 1 outlived it"
        time.sleep(0.01)


def test_launched_keeps_exit_codes_and_exec_failures(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    err_r, err_w = os.pipe()
    try:
        assert run(SandboxSpec(overlay(), ("no-such-command",), stderr=err_w)) == 127
    finally:
        os.close(err_w)
    with os.fdopen(err_r) as err:
        assert "no-such-command: command not found" in err.read()
    with pytest.raises(ExecFailed) as failed:
        run(SandboxSpec(overlay(), ("/nowhere",), exec_errors="docker", stderr=DEVNULL))
    assert failed.value.exit_code == 127
    with pytest.raises(SandboxError, match="working directory"):
        run(SandboxSpec(overlay(), ("true",), user="nobody", cwd="/etc/passwd/x"))


def test_caller_death_kills_a_launched_sandbox(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher, tmp_path: Path
) -> None:
    """As a fork of the caller dies with it (PR_SET_PDEATHSIG), a launched supervisor kills
    pid 1 when its caller dies: here a fork of ours (as a warm server's call is a fork of
    the server) sharing our launcher, which lives on."""
    report_r, report_w = os.pipe()
    hold_r, hold_w = os.pipe()  # never written: the command waits for ever
    root = overlay()
    state = tmp_path / "state"
    state.mkdir()
    caller = os.fork()
    if caller == 0:  # pragma: no cover - the child
        try:
            run(
                # A state dir of the test's: the killed caller cannot remove its own.
                SandboxSpec(root, ("sh", "-c", "read x"), stdin=hold_r, state_dir=state),
                started=lambda pid: os.write(report_w, str(pid).encode()),
            )
        finally:
            os._exit(0)
    os.close(report_w)
    try:
        pid1 = int(os.read(report_r, 32) or 0)
        assert pid1 > 0
        assert _ppid(_ppid(pid1)) == ready.pid
        os.kill(caller, signal.SIGKILL)
        os.waitpid(caller, 0)
        deadline = time.monotonic() + 10
        while _alive(pid1):
            assert time.monotonic() < deadline, "pid 1 outlived its caller"
            time.sleep(0.02)
        assert ready.ready() and _alive(ready.pid)  # other callers still have it
    finally:
        os.close(report_r)
        os.close(hold_r)
        os.close(hold_w)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or after it
        return False
    return state not in ("Z", "X")


def _write_pids(path: str) -> None:  # a handoff's removal the launcher's fork can take
    Path(path).write_text(f"{os.getpid()} {os.getppid()}")


@pytest.mark.parametrize("picklable", [True, False])
def test_handoff_of_a_launched_supervisor(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher, tmp_path: Path, picklable: bool
) -> None:
    """`run --rm`'s handoff: the launcher's fork runs a removal that pickles (its module is
    loaded after the status); one that does not is forked by us, as before."""
    done = tmp_path / "removed-by"
    moved: list[int] = []

    def move(supervisor: int) -> bool:
        moved.append(supervisor)
        return True

    remove = (
        functools.partial(_write_pids, str(done)) if picklable else lambda: _write_pids(str(done))
    )
    status = run(SandboxSpec(overlay(), ("true",)), handoff=Handoff(move, remove))
    assert status == 0
    deadline = time.monotonic() + 10
    while not done.exists() or not done.read_text():
        assert time.monotonic() < deadline, "nothing removed"
        time.sleep(0.01)
    pid, parent = map(int, done.read_text().split())
    assert moved == [pid]
    assert parent == (ready.pid if picklable else os.getpid())


def _write_lazy(path: str) -> None:  # in the launcher's fork, after the sandbox ran
    # (Functions only pid 1 calls: the supervisor calls the others itself.)
    libc = [name for name in unresolved_libc() if name in ("capset", "sethostname")]
    Path(path).write_text(" ".join(lazy_records(process._MADE_BY_FORKS) + libc) or "none")


def test_the_launcher_compiles_what_its_forks_make(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher, tmp_path: Path
) -> None:
    """The record classes only pid 1 and the supervisor make are compiled once, in the
    launcher, not in each of its forks, and libc's functions looked up there: its fork
    (the handoff's removal runs there) finds them made although it made none of those
    pid 1 makes."""
    done = tmp_path / "lazy"
    remove = functools.partial(_write_lazy, str(done))
    assert run(SandboxSpec(overlay(), ("true",)), handoff=Handoff(lambda _: True, remove)) == 0
    deadline = time.monotonic() + 10
    while not done.exists() or not done.read_text():
        assert time.monotonic() < deadline, "the removal did not run"
        time.sleep(0.01)
    assert done.read_text() == "none"


def test_launched_takes_the_callers_umask_and_rlimits(
    overlay: Callable[..., OverlayRoot], ready: launcher.Launcher
) -> None:
    """What a fork of ours would inherit, the launcher's fork takes from us."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    old = os.umask(0o027)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 777), hard))
        out_r, out_w = os.pipe()
        try:
            spec = SandboxSpec(overlay(), ("sh", "-c", "umask; ulimit -n"), stdout=out_w)
            assert run(spec) == 0
        finally:
            os.close(out_w)
        with os.fdopen(out_r) as out:
            assert out.read().split() == ["0027", str(min(hard, 777))]
    finally:
        os.umask(old)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_take_environment_sets_what_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the launcher's fork and the warm server's child take from their caller: after
    it, the environment is the caller's, in Python and for what we exec (libc's)."""
    monkeypatch.setenv("BUILDER_T_GONE", "1")
    monkeypatch.setenv("BUILDER_T_SAME", "2")
    monkeypatch.setenv("BUILDER_T_CHANGED", "3")
    wanted = {k: v for k, v in os.environb.items() if k != b"BUILDER_T_GONE"}
    wanted.update({b"BUILDER_T_CHANGED": b"4", b"BUILDER_T_NEW": b"5=6"})
    monkeypatch.setenv("BUILDER_T_NEW", "")  # (restored, i.e. removed, afterwards)
    monkeypatch.delenv("BUILDER_T_NEW")
    launcher.take_environment(wanted)
    assert dict(os.environb) == wanted
    shown = subprocess.run(["env", "-0"], capture_output=True, check=True).stdout
    ours = dict(line.split(b"=", 1) for line in shown.split(b"\0") if b"BUILDER_T_" in line)
    assert ours == {b"BUILDER_T_SAME": b"2", b"BUILDER_T_CHANGED": b"4", b"BUILDER_T_NEW": b"5=6"}
