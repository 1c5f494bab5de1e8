"""`builder run` as docker users type it: flags, exit codes, bad input (issue 8)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.runtime_support import containers_of, kill_leftovers, leftovers, popen
from tests.e2e.support import Builder

IMAGE = "busybox:latest"


@pytest.fixture(autouse=True)
def _no_stray_supervisor(builder: Builder) -> Iterator[None]:
    yield
    kill_leftovers(builder)


def _one_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_exit_codes_are_dockers(builder: Builder) -> None:
    assert builder("run", "--rm", IMAGE, "sh", "-c", "exit 7", check=False).status == 7
    missing = builder("run", "--rm", IMAGE, "nosuchcommand", check=False)
    assert missing.status == 127
    assert _one_error(missing.stderr) == (
        'error: exec: "nosuchcommand": executable file not found in $PATH'
    )
    denied = builder("run", "--rm", IMAGE, "/etc/passwd", check=False)
    assert denied.status == 126 and "permission denied" in _one_error(denied.stderr)
    # 128+N for signal N: under --init the shell is not pid 1, so SIGKILL reaches it.
    killed = builder("run", "--rm", "--init", IMAGE, "sh", "-c", "kill -9 $$", check=False)
    assert killed.status == 137
    assert containers_of(builder) == [] and leftovers(builder, "nosuchcommand") == {
        "processes": [],
        "mounts": [],
        "tmp": [],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-u", "nosuchuser", IMAGE, "true"],
            "error: unable to find user nosuchuser: no matching entries in passwd file",
        ),
        (["-u", "0:nosuchgroup", IMAGE, "true"], "error: unable to find group nosuchgroup"),
        (["--bogus-flag", IMAGE], "error: No such option"),
        (["nosuch:image", "true"], "error: no image 'nosuch:image'"),
        (
            ["--mount", "type=bind,source=/nonexistent/h8run,target=/x", IMAGE, "true"],
            'error: invalid mount config for type "bind": bind source path does not exist:'
            " /nonexistent/h8run",
        ),
        (["--mount", "type=volume,target=/x", IMAGE, "true"], "error: --mount type=volume"),
        (["-v", "named:/x", IMAGE, "true"], 'error: "named" includes invalid characters'),
        (["--tmpfs", "/t:noexec", IMAGE, "true"], "error: --tmpfs /t:noexec: unsupported"),
        (["--env-file", "/nonexistent/env", IMAGE, "true"], "error: open /nonexistent/env:"),
        (["--stop-signal", "SIGNOPE", IMAGE, "true"], "error: invalid signal: SIGNOPE"),
        (["--name", "bad name", IMAGE, "true"], 'error: invalid container name "bad name"'),
        (["-w", "relative", IMAGE, "true"], "error: sandbox: working directory 'relative'"),
    ],
)
def test_bad_input_is_one_error_line_exit_125_and_nothing_left(
    builder: Builder, args: list[str], message: str
) -> None:
    for remove in ([], ["--rm"]):
        result = builder("run", *remove, *args, check=False)
        assert result.status == 125, result.stderr
        assert _one_error(result.stderr).startswith(message)
        assert containers_of(builder) == []  # (docker would keep one as "created")
        assert leftovers(builder, "h8run-token") == {"processes": [], "mounts": [], "tmp": []}


def test_a_missing_volume_host_dir_is_made_as_docker_does(builder: Builder, tmp_path: Path) -> None:
    host = tmp_path / "new" / "dir"
    ran = builder("run", "--rm", "-v", f"{host}:/data", IMAGE, "sh", "-c", "echo hi > /data/f")
    assert ran.status == 0 and (host / "f").read_text() == "hi\n"


def test_volumes_mounts_and_read_only(builder: Builder, tmp_path: Path) -> None:
    host = tmp_path / "vol"
    host.mkdir()
    (host / "f").write_text("from host\n")
    script = (
        "cat /ro/f; touch /ro/new 2>/dev/null && echo ro-writable;"
        " echo w > /rw/new && echo rw-ok;"
        " touch /in-root 2>/dev/null && echo root-writable;"
        " echo t > /t1/x && echo t1-ok; stat -c %a /t2; df -k /t1 /t2 | tail -2 | awk '{print $2}';"
        " echo s > /dev/shm/s && echo shm-ok"
    )
    ran = builder(
        "run", "--rm", "--read-only",
        "-v", f"{host}:/ro:ro",
        "--mount", f"type=bind,src={host},dst=/rw",
        "--tmpfs", "/t1:size=1m",
        "--mount", "type=tmpfs,destination=/t2,tmpfs-size=2097152,tmpfs-mode=700",
        IMAGE, "sh", "-c", script,
    )  # fmt: skip
    assert ran.stdout.split("\n") == [
        "from host", "rw-ok", "t1-ok", "700", "1024", "2048", "shm-ok", ""
    ]  # fmt: skip
    assert (host / "new").read_text() == "w\n"
    # Without --read-only the root takes writes (so the check above can fail).
    assert builder("run", "--rm", IMAGE, "touch", "/in-root").status == 0


def test_env_file_workdir_user_hostname_entrypoint(builder: Builder, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nA=from file\nB=b=c\n  C='quoted'\nFROM_HOST\nUNSET_X\n")
    ran = builder(
        "run", "--rm", "--env-file", env_file, "-e", "A=from flag",
        "-w", "/made/here", "-u", "1000:1001", "--hostname", "box",
        "--entrypoint", "/bin/sh", IMAGE,
        "-c", 'echo "$A|$B|$C|$FROM_HOST|${UNSET_X-unset}"; pwd; id -u; id -g; hostname',
        env={"FROM_HOST": "host value"},
    )  # fmt: skip
    assert ran.stdout.split("\n") == [
        "from flag|b=c|'quoted'|host value|unset", "/made/here", "1000", "1001", "box", ""
    ]  # fmt: skip


def test_stdin_is_closed_without_i_and_passed_with_it(builder: Builder, tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.write_text("piped\n")
    with data.open("rb") as f:
        proc = popen(builder, "run", "--rm", "-i", IMAGE, "cat", stdin=f)
        out, _ = proc.communicate(timeout=60)
    assert out == b"piped\n"
    with data.open("rb") as f:
        proc = popen(builder, "run", "--rm", IMAGE, "cat", stdin=f)
        out, _ = proc.communicate(timeout=60)
    assert out == b""


def test_signals_are_forwarded_and_an_ignoring_process_is_killed(builder: Builder) -> None:
    trap = 'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.05; done'
    proc = popen(builder, "run", "--rm", IMAGE, "sh", "-c", trap)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 5 and out == b"got-term\n"
    # `sleep` as pid 1 has no handler: the kernel drops SIGTERM; --stop-timeout ends it.
    proc = popen(
        builder, "run", "--rm", "--stop-timeout", "1", IMAGE, "sh", "-c", "echo r; exec sleep 60"
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"r\n"
    time.sleep(0.2)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 137 and 0.9 < time.monotonic() - start < 5
    assert containers_of(builder) == []


@pytest.mark.parametrize("init", [[], ["--init"]])
def test_every_signal_dockers_sig_proxy_forwards_reaches_the_container(
    builder: Builder, init: list[str]
) -> None:
    """docker run forwards every signal but SIGCHLD, SIGPIPE (and Go's SIGURG): the
    container traps each; the CLI neither dies of SIGQUIT/SIGUSR1 nor keeps them."""
    names = ["USR1", "USR2", "QUIT", "ALRM", "WINCH", "CONT", "TSTP"]
    traps = "; ".join(f'trap "echo got-{n}" {n}' for n in names)
    script = f'{traps}; trap "exit 6" TERM; echo ready; while :; do sleep 0.05; done'
    proc = popen(builder, "run", "--rm", *init, IMAGE, "sh", "-c", script)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    if init:  # under --init the shell is pid 1's child: its traps are set when it prints
        time.sleep(0.1)
    for name in names:
        proc.send_signal(signal.Signals[f"SIG{name}"])
        assert proc.stdout.readline() == f"got-{name}\n".encode()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (6, b"")
    assert containers_of(builder) == []


def test_init_forwards_the_signal_to_the_command_and_reaps(builder: Builder) -> None:
    proc = popen(builder, "run", "--rm", "--init", IMAGE, "sh", "-c", "echo r; exec sleep 60")
    assert proc.stdout is not None and proc.stdout.readline() == b"r\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=5)
    assert proc.returncode == 143  # sleep died of SIGTERM: init forwarded it
    ps = builder("run", "--rm", "--init", IMAGE, "ps", "-o", "pid,comm")
    assert ps.stdout.split("\n")[1].split() == ["1", "init"]
    # An orphan is reparented to pid 1: init reaps it, so no zombie remains.
    orphan = "(sleep 0.1 &); sleep 0.5; ps -o stat,comm | grep -c '^Z' || true"
    assert builder("run", "--rm", "--init", IMAGE, "sh", "-c", orphan).stdout == "0\n"


def test_the_container_id_is_64_hex_and_its_hostname_the_short_id(builder: Builder) -> None:
    ran = builder("run", IMAGE, "hostname")
    (cid,) = containers_of(builder)
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
    assert ran.stdout == cid[:12] + "\n"
    assert os.path.isdir(builder.root / "containers" / cid / "upper")


def _on_a_terminal(builder: Builder, *args: str, resize_after: bytes = b"") -> tuple[bytes, int]:
    """Run the CLI with a real pty as its stdio, 33 rows x 77 columns; once the output
    shows `resize_after`, make the terminal 40 x 100 and send SIGWINCH (what a terminal
    emulator does). Returns the output and the exit status."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    proc = popen(builder, *args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    resized = not resize_after
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the CLI and everything it started have closed the pty
            break
        if not data:
            break
        out += data
        if not resized and resize_after in out:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
            proc.send_signal(signal.SIGWINCH)
            resized = True
    os.close(master)
    return out, proc.wait(timeout=30)


def test_t_gives_a_pty_with_the_callers_window_size(builder: Builder) -> None:
    out, status = _on_a_terminal(builder, "run", "--rm", "-t", IMAGE, "stty", "size")
    assert (out, status) == (b"33 77\r\r\n", 0)  # our pty's \r\n, then the caller's
    script = "test -t 0 && test -t 1 && test -t 2 && echo all-ttys; exit 4"
    out, status = _on_a_terminal(builder, "run", "--rm", "-t", IMAGE, "sh", "-c", script)
    assert (out, status) == (b"all-ttys\r\r\n", 4)
    # Without -t, no terminal: the same test fails.
    assert builder("run", "--rm", IMAGE, "sh", "-c", "test -t 1", check=False).status == 1


def test_t_passes_window_size_changes_on(builder: Builder) -> None:
    script = "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done"
    out, status = _on_a_terminal(
        builder, "run", "--rm", "-t", IMAGE, "sh", "-c", script, resize_after=b"ready"
    )
    assert (out, status) == (b"ready\r\r\n40 100\r\r\n", 0)


def test_it_relays_keys_and_ctrl_c_reaches_the_container(builder: Builder) -> None:
    master, slave = pty.openpty()
    # A trap runs once the foreground command ends: short sleeps, so ^C is seen at once.
    script = "trap 'echo got-int; exit 9' INT; echo ready; read line; echo \"line=$line\"; "
    script += "while :; do sleep 0.05; done"
    proc = popen(builder, "run", "--rm", "-it", IMAGE, "sh", "-c", script,
                 stdin=slave, stdout=slave, stderr=slave, start_new_session=True)  # fmt: skip
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    sent_line = sent_int = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        if b"ready" in out and not sent_line:  # typed once our terminal is in raw mode
            os.write(master, b"hello\r")
            sent_line = True
        if b"line=hello" in out and not sent_int:
            os.write(master, b"\x03")  # ^C as a key: raw mode passes it to the container's pty
            sent_int = True
    os.close(master)
    assert proc.wait(timeout=30) == 9
    assert b"line=hello" in out and b"got-int" in out


def test_only_a_removed_containers_root_skips_the_syncs(builder: Builder) -> None:
    # --rm throws the upper dir away: overlayfs' "volatile" spares the unmount's sync of
    # the whole upper file system. A kept container's root is mounted as before.
    probe = ("busybox", "sh", "-c", "grep ' / / ' /proc/self/mountinfo")
    assert "volatile" in builder("run", "--rm", *probe).stdout  # fsync=volatile (6.x)
    kept = builder("run", "--name", "kept", *probe).stdout
    assert "overlay" in kept and "volatile" not in kept
    builder("rm", "kept")
