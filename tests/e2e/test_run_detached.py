"""`run -d` and the verbs around it (ps, logs, stop, rm, wait), and that no process or mount
of ours outlives a container whatever kills what (issue 8)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.runtime_support import (
    containers_of,
    kill_leftovers,
    leftovers,
    mounts_with,
    popen,
    processes_with,
    wait_gone,
)
from tests.e2e.support import Builder

IMAGE = "busybox:latest"


@pytest.fixture(autouse=True)
def _no_stray_supervisor(builder: Builder) -> Iterator[None]:
    yield
    kill_leftovers(builder)


TOKEN = "31.4159"  # the containers' `sleep` argument: how the tests find their processes
NOTHING = {"processes": [], "mounts": [], "tmp": []}


def _ps(builder: Builder, *flags: str) -> list[dict[str, str]]:
    out = builder("ps", "--format", "json", *flags).stdout
    return [json.loads(line) for line in out.splitlines()]


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_detached_lifecycle(builder: Builder) -> None:
    loop = f"while :; do sleep {TOKEN} & wait $!; done"
    script = f"echo started; trap 'echo stopping; exit 3' TERM; {loop}"
    cid = builder("run", "-d", "--name", "web", IMAGE, "sh", "-c", script).stdout.strip()
    assert len(cid) == 64 and containers_of(builder) == [cid]
    # It outlived the CLI, and is no child of the test: a supervisor of its own runs it.
    # (`run -d` returns once the shell runs; its first `sleep` may come a moment later.)
    deadline = time.monotonic() + 10
    while not processes_with(f"sleep {TOKEN}", exact=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes_with(f"sleep {TOKEN}", exact=True)) == 1
    assert all(_ppid(p) != os.getpid() for p in processes_with(str(builder.root)))
    (row,) = _ps(builder)
    assert (row["ID"], row["Names"], row["State"], row["Image"]) == (
        cid[:12],
        "web",
        "running",
        IMAGE,
    )
    assert row["Status"].startswith("Up ")
    # A name is unique; ids are found by any unique prefix, and by name.
    taken = builder("run", "-d", "--name", "web", IMAGE, "true", check=False)
    assert taken.status == 125 and 'The container name "/web" is already in use' in taken.stderr
    deadline = time.monotonic() + 10
    while "started" not in builder("logs", cid[:5]).stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    follower = popen(builder, "logs", "-f", "web")
    busy = builder("rm", "web", check=False)
    assert busy.status == 1 and "container is running" in busy.stderr
    assert builder("stop", cid[:12]).stdout == f"{cid[:12]}\n"
    out, _ = follower.communicate(timeout=10)  # -f ends with the container
    assert out == b"started\nstopping\n"
    assert builder("wait", "web").stdout == "3\n"
    (row,) = _ps(builder, "-a")
    assert row["State"] == "exited" and row["Status"].startswith("Exited (3) ")
    assert _ps(builder) == []
    assert builder("rm", "web").stdout == "web\n"
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING
    missing = builder("logs", "web", check=False)
    assert missing.status == 1 and missing.stderr == "error: No such container: web\n"


def test_stop_kills_after_the_timeout_and_honours_the_stop_signal(builder: Builder) -> None:
    # `sleep` as pid 1 ignores SIGTERM: stop -t 1 has to SIGKILL it.
    cid = builder("run", "-d", IMAGE, "sleep", TOKEN).stdout.strip()
    start = time.monotonic()
    builder("stop", "-t", "1", cid)
    assert 1 <= time.monotonic() - start < 6
    assert builder("wait", cid).stdout == "137\n"
    # With --init the signal reaches sleep, which dies of it at once.
    cid = builder(
        "run", "-d", "--init", "--stop-signal", "SIGUSR1", IMAGE, "sleep", TOKEN
    ).stdout.strip()
    start = time.monotonic()
    builder("stop", "-t", "20", cid)
    assert time.monotonic() - start < 5
    assert builder("wait", cid).stdout == f"{128 + signal.SIGUSR1}\n"
    builder("rm", *containers_of(builder))
    assert leftovers(builder, TOKEN) == NOTHING


def test_rm_f_of_running_containers_leaves_nothing(builder: Builder) -> None:
    ids = [builder("run", "-d", IMAGE, "sleep", TOKEN).stdout.strip() for _ in range(2)]
    ids.append(builder("run", "-d", "--rm", "-t", IMAGE, "sleep", TOKEN).stdout.strip())
    assert len(processes_with(f"sleep {TOKEN}", exact=True)) == 3
    assert builder("rm", "-f", *ids).stdout.split() == ids
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING


def test_detached_rm_removes_itself_and_t_logs_the_pty(builder: Builder) -> None:
    cid = builder("run", "-d", "--rm", IMAGE, "true").stdout.strip()
    deadline = time.monotonic() + 10
    while containers_of(builder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cid and containers_of(builder) == []
    cid = builder("run", "-d", "-t", IMAGE, "sh", "-c", "test -t 1 && echo tty").stdout.strip()
    assert builder("wait", cid).stdout == "0\n"
    assert builder("logs", cid).stdout == "tty\n"  # (text mode: \r\n read as \n)
    assert (builder.root / "containers" / cid / "container.log").read_bytes() == b"tty\r\n"


def test_a_detached_start_failure_is_125_and_leaves_nothing(builder: Builder) -> None:
    failed = builder("run", "-d", "--rm", "-u", "nosuchuser", IMAGE, "true", check=False)
    assert failed.status == 125
    assert (
        failed.stderr
        == "error: unable to find user nosuchuser: no matching entries in passwd file\n"
    )
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING


@pytest.mark.parametrize("init", [[], ["--init"]])
def test_a_detached_command_that_cannot_run_fails_at_once_as_dockers(
    builder: Builder, init: list[str]
) -> None:
    """docker run -d: the id it made, then the exec's error and 126/127 (not exit 0 and a
    container that ends at once)."""
    missing = builder("run", "-d", *init, "--name", "gone", IMAGE, "nosuchcommand", check=False)
    assert missing.status == 127 and missing.stdout == f"{containers_of(builder)[0]}\n"
    assert missing.stderr == 'error: exec: "nosuchcommand": executable file not found in $PATH\n'
    assert builder("wait", "gone").stdout == "127\n"  # kept, as docker keeps it
    denied = builder("run", "-d", *init, "--rm", IMAGE, "/etc/passwd", check=False)
    assert denied.status == 126 and len(denied.stdout) == 65  # the id; --rm removed it
    assert denied.stderr == 'error: exec: "/etc/passwd": permission denied\n'
    builder("rm", "gone")
    assert containers_of(builder) == [] and leftovers(builder, "nosuchcommand") == NOTHING


def test_killing_the_supervisor_kills_the_container(builder: Builder) -> None:
    cid = builder("run", "-d", IMAGE, "sleep", TOKEN).stdout.strip()
    assert len(processes_with(f"sleep {TOKEN}", exact=True)) == 1
    ours = processes_with(str(builder.root))
    (supervisor,) = [p for p in ours if _ppid(p) not in ours]  # it forked the others
    os.kill(supervisor, signal.SIGKILL)
    assert leftovers(builder, TOKEN)["processes"] == []
    (row,) = _ps(builder, "-a")
    assert row["State"] == "dead" and builder("wait", cid).stdout == "255\n"
    builder("rm", cid)
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.5, 1.0])
def test_killing_the_attached_cli_at_any_point_leaves_no_process_or_mount(
    builder: Builder, delay: float
) -> None:
    """From Python start-up through image lookup, sandbox setup and the running command."""
    root = str(builder.root)
    for flags in ([], ["--rm", "-t"], ["--rm", "--init"]):
        proc = popen(builder, "run", *flags, IMAGE, "sleep", TOKEN)
        time.sleep(delay)
        proc.kill()
        proc.communicate()
        assert wait_gone(root, TOKEN) == [] and mounts_with(root) == []
    builder("run", "--rm", IMAGE, "true")  # sweeps what the killed runs left behind
    assert leftovers(builder, TOKEN) == NOTHING
    # The one without --rm stays, as docker keeps it, shown dead; those with --rm went.
    assert [r["State"] for r in _ps(builder, "-a")] in ([], ["dead"])
    if containers_of(builder):
        builder("rm", *containers_of(builder))
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING


def test_ps_is_safe_while_containers_start_and_stop(builder: Builder) -> None:
    failures: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            result = builder("ps", "-a", "--format", "json", check=False)
            if result.status != 0:
                failures.append(result.stderr)
            for line in result.stdout.splitlines():
                row = json.loads(line)
                if row["State"] not in ("running", "exited"):
                    failures.append(line)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = [builder("run", "-d", IMAGE, "sleep", "0.3").stdout.strip() for _ in range(4)]
        ids += [builder("run", "--rm", IMAGE, "true").stdout.strip() for _ in range(2)]
        for cid in ids[:4]:
            builder("wait", cid)
        builder("rm", *ids[:4])
    finally:
        stop.set()
        watcher.join()
    assert failures == []
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING


def test_a_name_is_taken_once_by_concurrent_runs(builder: Builder) -> None:
    procs = [popen(builder, "run", "-d", "--name", "one", IMAGE, "sleep", TOKEN) for _ in range(4)]
    results = [(p.communicate(timeout=60), p.returncode) for p in procs]
    assert sorted(code for _, code in results) == [0, 125, 125, 125]
    for (_, err), code in results:
        assert code == 0 or b'The container name "/one" is already in use' in err
    (row,) = _ps(builder)
    assert row["Names"] == "one"
    builder("rm", "-f", "one")
    assert containers_of(builder) == [] and leftovers(builder, TOKEN) == NOTHING
