"""run() and call() against the real kernel, in a busybox root on overlayfs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import DirRoot, Mount, OverlayRoot, SandboxSpec, call, run
from builder.sandbox.spec import ProcessStartError

ShRunner = Callable[[SandboxSpec, str], tuple[int, str, str]]


def test_echo_through_a_pipe(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    assert sh(SandboxSpec(overlay(), ()), "echo hello") == (0, "hello\n", "")


# (pid 1 cannot be killed from inside its namespace; 128+N is tested with signals below.)
@pytest.mark.parametrize(("script", "status"), [("true", 0), ("exit 3", 3), ("exit 255", 255)])
def test_exit_status(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, script: str, status: int
) -> None:
    assert sh(SandboxSpec(overlay(), ()), script)[0] == status


def test_command_not_found_is_127(overlay: Callable[..., OverlayRoot]) -> None:
    err_r, err_w = os.pipe()
    status = run(SandboxSpec(overlay(), ("no-such-command",), stderr=err_w))
    os.close(err_w)
    with os.fdopen(err_r) as err:
        message = err.read()
    assert status == 127
    assert "no-such-command" in message and "not found" in message


def test_env_and_missing_cwd_created(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    root = overlay()
    spec = SandboxSpec(root, (), env=("FOO=bar baz",), cwd="/work/dir")
    status, out, _ = sh(spec, 'echo "$FOO"; pwd; echo "$PATH"')
    assert status == 0
    foo, cwd, path = out.splitlines()
    assert (foo, cwd) == ("bar baz", "/work/dir")
    assert "/bin" in path.split(":")
    assert (root.upper / "work" / "dir").is_dir()  # WORKDIR lands in the layer, like docker


def test_user_nobody(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    assert sh(SandboxSpec(overlay(), (), user="nobody"), "id -u; id -g")[1] == "65534\n65534\n"
    assert sh(SandboxSpec(overlay(), (), user="1234:5678"), "id -u; id -g")[1] == "1234\n5678\n"


def test_unknown_user_cannot_start(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    with pytest.raises(ProcessStartError, match="unable to find user alice: no matching entries"):
        sh(SandboxSpec(overlay(), (), user="alice"), "true")


def test_fresh_upper_keeps_the_image_root(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, busybox_root: Path
) -> None:
    # overlayfs shows `/` with the upper dir's mode; a store temp dir is 0700.
    root = overlay()
    root.upper.chmod(0o700)
    busybox_root.chmod(0o755)
    spec = SandboxSpec(root, (), user="nobody")
    assert sh(spec, "stat -c %a /; ls / >/dev/null && echo ok") == (0, "755\nok\n", "")


def test_scratch_root_is_0755(overlay: Callable[..., OverlayRoot]) -> None:
    root = overlay()
    root.upper.chmod(0o700)
    status = call(SandboxSpec(OverlayRoot((), root.upper, root.work), ("x",)), lambda: 0)
    assert status == 0
    assert oct(root.upper.stat().st_mode & 0o7777) == oct(0o755)


def test_cwd_the_user_cannot_enter(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    root = overlay()
    (root.upper / "w").mkdir(mode=0o700)
    with pytest.raises(ProcessStartError, match="working directory /w: Permission denied"):
        sh(SandboxSpec(root, (), user="nobody", cwd="/w"), "true")


def test_files_keep_host_ids(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    root = overlay()
    status, _, _ = sh(
        SandboxSpec(root, ()), "mkdir -p -m 1777 /o && touch /o/f && chown 123:456 /o/f"
    )
    assert status == 0
    assert sh(SandboxSpec(root, (), user="nobody"), "touch /o/by-nobody")[0] == 0
    st = (root.upper / "o" / "f").stat()
    assert (st.st_uid, st.st_gid) == (123, 456)
    st = (root.upper / "o" / "by-nobody").stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_hostname_pid1_and_etc_files(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    spec = SandboxSpec(overlay(), (), hostname="box")
    status, out, _ = sh(spec, "hostname; echo $$; cat /etc/hostname; cat /etc/hosts")
    lines = out.splitlines()
    assert status == 0
    assert lines[:3] == ["box", "1", "box"]
    assert any(line.startswith("127.0.0.1") and "box" in line for line in lines[3:])


def test_network_none_has_only_lo(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    status, out, _ = sh(SandboxSpec(overlay(), ()), "ls /sys/class/net; ip -o link")
    assert status == 0
    assert out.split("\n")[0] == "lo"
    assert "lo:" in out and "UP" in out and len(out.strip().splitlines()) == 2


def test_network_host_sees_host_interfaces(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    status, out, _ = sh(SandboxSpec(overlay(), (), network="host"), "ls /sys/class/net")
    assert status == 0
    assert sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


def test_host_root_is_unreachable(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, tmp_path: Path
) -> None:
    marker = tmp_path / "host-marker"
    marker.write_text("secret")
    script = (
        f"cat {marker} 2>/dev/null && echo LEAK; "
        f"ls /proc/1/root{marker} 2>/dev/null && echo LEAK; "
        "ls /proc/1/root/work 2>/dev/null && echo LEAK; "
        "echo roots:; awk '$5 == \"/\" { print $(NF-2) }' /proc/self/mountinfo"
    )
    status, out, _ = sh(SandboxSpec(overlay(), ()), script)
    assert status == 0
    assert "LEAK" not in out
    # One mount at "/", the overlay: the host's root is not mounted anywhere in the sandbox.
    assert out.split("roots:\n")[1].splitlines() == ["overlay"]


def test_no_capabilities_in_the_host_user_namespace(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    # uid_map shows a user namespace; mounting over a host-owned mount must be refused.
    status, out, _ = sh(
        SandboxSpec(overlay(), ()),
        "cat /proc/self/uid_map; mount -o remount,rw /etc/hosts; echo rc=$?",
    )
    assert status == 0
    assert out.split()[:3] == ["0", "0", "4294967295"]
    assert "rc=0" not in out


def test_only_stdio_fds_are_inherited(overlay: Callable[..., OverlayRoot], sh: ShRunner) -> None:
    leak = os.open("/dev/null", os.O_RDONLY)  # inheritable on purpose
    os.set_inheritable(leak, True)
    try:
        status, out, _ = sh(SandboxSpec(overlay(), ()), "ls /proc/self/fd")
    finally:
        os.close(leak)
    assert status == 0
    assert sorted(out.split()) == ["0", "1", "2", "3"]  # 3: the fd `ls` opened to list


def test_binds_and_tmpfs(overlay: Callable[..., OverlayRoot], sh: ShRunner, tmp_path: Path) -> None:
    src = tmp_path / "ctx"
    src.mkdir()
    (src / "f").write_text("from host")
    root = overlay()
    spec = SandboxSpec(
        root,
        (),
        mounts=(
            Mount("/ctx", "bind", src),
            Mount("/cache", "bind", src, readonly=False),
            Mount("/scratch/tmp", "tmpfs", readonly=False),
        ),
    )
    status, out, _ = sh(
        spec,
        "cat /ctx/f; touch /ctx/g 2>/dev/null || echo ro; "
        "touch /cache/h && touch /scratch/tmp/x && echo ok",
    )
    assert (status, out) == (0, "from hostro\nok\n")
    assert (src / "h").exists() and not (src / "g").exists()
    # The stubs /ctx /cache /scratch are gone; /etc stays as an empty copied-up dir (its
    # hosts/hostname/resolv.conf stubs were removed; see test_mounts for an empty base).
    assert os.listdir(root.upper) == ["etc"]
    assert os.listdir(root.upper / "etc") == []


def test_dir_root_readonly(tmp_path: Path, busybox_root: Path, sh: ShRunner) -> None:
    before = sorted(os.listdir(busybox_root))
    status, out, _ = sh(
        SandboxSpec(DirRoot(busybox_root, readonly=True), ()),
        "touch /x 2>/dev/null || echo ro; ls /proc/self >/dev/null && echo ok",
    )
    assert (status, out) == (0, "ro\nok\n")
    assert sorted(os.listdir(busybox_root)) == before  # /proc /sys /dev stubs removed


def test_call_copies_from_an_fd_opened_host_dir(
    overlay: Callable[..., OverlayRoot], tmp_path: Path
) -> None:
    ctx = tmp_path / "context"
    ctx.mkdir()
    (ctx / "a.txt").write_text("payload")
    root = overlay()
    dirfd = os.open(ctx, os.O_RDONLY | os.O_DIRECTORY)

    def copy_in() -> int:
        # Inside the root: "/" is the image; the context is reachable only through dirfd.
        fd = os.open("a.txt", os.O_RDONLY, dir_fd=dirfd)
        data = os.read(fd, 100)
        os.makedirs("/app", exist_ok=True)
        with open("/app/a.txt", "wb") as f:
            f.write(data)
        return 0 if not os.path.exists(str(ctx)) else 9  # the host path must not resolve

    try:
        assert call(SandboxSpec(root, (), cwd="/"), copy_in, keep_fds=[dirfd]) == 0
    finally:
        os.close(dirfd)
    assert (root.upper / "app" / "a.txt").read_text() == "payload"


def test_call_exception_is_status_1(overlay: Callable[..., OverlayRoot]) -> None:
    def boom() -> int:
        raise RuntimeError("nope")

    err_r, err_w = os.pipe()
    assert call(SandboxSpec(overlay(), (), stderr=err_w), boom) == 1
    os.close(err_w)
    with os.fdopen(err_r) as err:
        assert "RuntimeError: nope" in err.read()


def test_setup_failure_is_a_sandbox_error(tmp_path: Path) -> None:
    spec = SandboxSpec(OverlayRoot((tmp_path / "missing",), tmp_path, tmp_path / "w"), ("true",))
    with pytest.raises(SandboxError, match="missing"):
        run(spec)


_SIGNAL_HELPER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from builder.sandbox import OverlayRoot, SandboxSpec, run
    lower, upper, work, script = sys.argv[1:]
    root = OverlayRoot((Path(lower),), Path(upper), Path(work))
    print("status", run(SandboxSpec(root, ("sh", "-c", script))), flush=True)
""")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # A handler in pid 1: the forwarded SIGTERM reaches it.
        ('trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done', 42),
        # No handler: pid 1 ignores SIGTERM, so after the grace it is killed (128+9).
        ("echo ready; sleep 30", 137),
    ],
)
def test_signals_are_forwarded(
    overlay: Callable[..., OverlayRoot], script: str, expected: int
) -> None:
    root = overlay()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SIGNAL_HELPER,
            str(root.lowers[0]),
            str(root.upper),
            str(root.work),
            script,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert out == f"status {expected}\n"
    assert time.monotonic() - start < 10


def test_the_per_run_files_stay_off_the_disk(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, tmp_path: Path
) -> None:
    # /etc/hosts and co., the root's mount point: on a tmpfs in the sandbox's namespace.
    # The host's view of the state dir stays empty while the command runs (on this disk a
    # file or dir made and removed costs 1-2 ms), and the run still sees its files.
    state = tmp_path / "state"
    state.mkdir()
    seen = tmp_path / "seen"
    spec = SandboxSpec(overlay(), ("true",), hostname="probe", state_dir=state)
    assert sh(spec, "cat /etc/hostname")[:2] == (0, "probe\n")
    pid = os.fork()
    if pid == 0:  # look from the host while the sandbox runs
        time.sleep(0.5)
        seen.write_text(" ".join(sorted(os.listdir(state))))
        os._exit(0)
    assert sh(spec, "sleep 1.5")[0] == 0
    os.waitpid(pid, 0)
    assert seen.read_text() == ""
    assert list(state.iterdir()) == []


@pytest.mark.parametrize("volatile", [False, True])
def test_a_volatile_root_is_mounted_volatile(
    overlay: Callable[..., OverlayRoot], sh: ShRunner, volatile: bool
) -> None:
    root = overlay()
    spec = SandboxSpec(replace(root, volatile=volatile), ("true",))
    status, out, _ = sh(spec, "grep ' / / ' /proc/self/mountinfo")
    assert status == 0 and ("volatile" in out) == volatile, out
    assert (root.work / "work" / "incompat" / "volatile").is_dir() == volatile  # the kernel's


_DISPOSITIONS_HELPER = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from builder.sandbox import OverlayRoot, SandboxSpec, run
    from builder.sandbox.sigproxy import proxied
    lower, upper, work = sys.argv[1:]
    # A caller started under nohup (SIGHUP ignored), with a forwarded signal ignored too
    # and Python's own SIGPIPE/SIGXFSZ: none of it may reach the container.
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    # ...and one blocked that is not forwarded (a CI runner's mask): runc starts the
    # container with an empty mask, so do we.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGURG})
    # ...and glibc's own signal 32 ignored (as a CI runner handed it to us), which neither
    # libc's sigaction nor Python can touch: the raw rt_sigaction, handler SIG_IGN.
    import ctypes, struct
    from builder.sandbox.syscalls import _nr
    ignore = ctypes.create_string_buffer(struct.pack("4Q", 1, 0, 0, 0))
    assert ctypes.CDLL("libc.so.6").syscall(_nr("rt_sigaction"), 32, ignore, None, 8) == 0
    root = OverlayRoot((Path(lower),), Path(upper), Path(work))
    spec = SandboxSpec(root, ("grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"))
    sys.exit(run(spec, forward=proxied()))
""")


def _in_a_fresh_interpreter(helper: str, root: OverlayRoot) -> str:
    """What `helper` prints, run by a new interpreter with the root's dirs as its args."""
    paths = (str(root.lowers[0]), str(root.upper), str(root.work))
    return subprocess.run(
        [sys.executable, "-c", helper, *paths],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=60,
    ).stdout


def test_the_command_starts_with_no_signal_ignored_or_blocked(
    overlay: Callable[..., OverlayRoot],
) -> None:
    """The supervisor blocks the forwarded signals while pid 1 runs (it must outlive a ^C):
    pid 1 unblocks them and puts every ignored one back to its default before exec."""
    out = _in_a_fresh_interpreter(_DISPOSITIONS_HELPER, overlay())
    assert out.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16]


def test_a_discarded_upper_keeps_its_stubs_for_the_caller_to_drop(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    """`run --rm`: the upper dir is thrown away next, so the supervisor leaves the mount
    points it made there; one that is only volatile (a build step's, synced by the store)
    gets them removed, as a plain one does (test_mounts)."""
    root = replace(overlay(), volatile=True, discarded=True)
    assert sh(SandboxSpec(root, ()), "true")[0] == 0
    assert sorted(os.listdir(root.upper / "etc")) == ["hostname", "hosts", "resolv.conf"]
    kept = replace(overlay(), volatile=True)
    assert sh(SandboxSpec(kept, ()), "true")[0] == 0
    assert [p.name for p in kept.upper.rglob("*") if not p.is_dir()] == []


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children", encoding="ascii") as f:
            found.update(int(pid) for pid in f.read().split())
    return found


def test_a_supervisor_still_exiting_is_reaped_by_the_next_run(
    overlay: Callable[..., OverlayRoot], sh: ShRunner
) -> None:
    """The supervisor says its status once it has cleaned up, and run() returns without
    waiting for its exit (the unmapping of a big process's copy); no zombie stays."""
    before = _children()
    assert sh(SandboxSpec(overlay(), ()), "exit 3") == (3, "", "")  # EOF: no fd kept open
    first = _children() - before
    time.sleep(0.5)  # its exit is over: a zombie, if no one reaped it
    assert sh(SandboxSpec(overlay(), ()), "true")[0] == 0
    assert not first & _children()


_COMPILED_HELPER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from builder.sandbox import OverlayRoot, SandboxSpec, process, run
    from tests.sandbox.records import lazy_records, unresolved_libc
    lower, upper, work = sys.argv[1:]
    before = lazy_records(process._MADE_BY_FORKS)
    assert run(SandboxSpec(OverlayRoot((Path(lower),), Path(upper), Path(work)), ("true",))) == 0
    print(len(before), " ".join(lazy_records(process._MADE_BY_FORKS)) or "none")
    print(" ".join(unresolved_libc()) or "none")
""")


def test_what_only_the_forks_make_is_compiled_once_before_they_fork(
    overlay: Callable[..., OverlayRoot],
) -> None:
    """The record classes that only the supervisor and pid 1 make are compiled by the
    caller (a fresh interpreter here, no launcher), so a fork inherits them compiled
    instead of compiling each again (~2.5 ms of every sandbox); libc's functions are
    looked up there too (~1 ms)."""
    out = _in_a_fresh_interpreter(_COMPILED_HELPER, overlay())
    assert out.split() == ["6", "none", "none"]  # all lazy before the run; none after it
