"""Resource limits through real cgroups (this machine: v1 controllers plus an empty v2
mount), and the v2 file layout against a directory standing in for a v2 hierarchy (a v2
hierarchy with controllers cannot exist here while v1 holds them).

Every test uses its own --cgroup-parent and checks that nothing of ours is left in it.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import SandboxError, UsageError
from builder.sandbox import SandboxSpec
from builder.sandbox.cgroups import (
    Cgroup,
    Hierarchy,
    Spare,
    hierarchies,
    made_for,
    move_here,
    procs_files,
)
from builder.sandbox.limits import Limits, OutOfMemory, parse_bytes
from tests.sandbox.conftest import ShRunner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root here")


def _mount_of(controller: str) -> str:
    for h in hierarchies():
        if controller in h.controllers:
            return h.mount
    pytest.skip(f"no {controller} controller on this machine")


@pytest.fixture
def spec(overlay, cgroup_parent: str) -> SandboxSpec:  # type: ignore[no-untyped-def]
    return SandboxSpec(root=overlay(), argv=("true",), limits=Limits(parent=cgroup_parent))


def _limited(spec: SandboxSpec, **limits: object) -> SandboxSpec:
    assert spec.limits is not None
    return replace(spec, limits=replace(spec.limits, **limits))


def test_the_pids_limit_stops_a_fork_attempt(spec: SandboxSpec, sh: ShRunner) -> None:
    script = "n=0; for i in $(seq 100); do sleep 5 & n=$((n+1)); done; echo started $n"
    status, out, err = sh(_limited(spec, pids=50), script)
    assert "can't fork" in err
    assert "started 100" not in out
    # Without the limit the same script starts all 100.
    status, out, _ = sh(spec, "for i in $(seq 100); do sleep 0.1 & done; wait; echo done")
    assert (status, out) == (0, "done\n")


def test_a_memory_hog_is_killed_and_reported(spec: SandboxSpec, sh: ShRunner) -> None:
    with pytest.raises(OutOfMemory) as caught:
        sh(_limited(spec, memory=64 << 20), "dd if=/dev/zero of=/dev/null bs=200M count=1")
    assert caught.value.status == 137
    assert str(caught.value) == "killed: out of memory (limit 64 MiB)"
    # Within the limit, the same command runs.
    status, _, _ = sh(_limited(spec, memory=64 << 20), "dd if=/dev/zero of=/dev/null bs=8M count=1")
    assert status == 0


def test_a_child_killed_by_oom_does_not_fail_a_command_that_succeeds(
    spec: SandboxSpec, sh: ShRunner
) -> None:
    # docker reports the status; the OOM is only the reason when the command fails.
    status, out, _ = sh(
        _limited(spec, memory=64 << 20), "dd if=/dev/zero of=/dev/null bs=200M count=1; echo ok"
    )
    assert (status, out) == (0, "ok\n")


def test_limits_are_written_where_the_process_runs(spec: SandboxSpec, sh: ShRunner) -> None:
    """Read the container's cgroup files from outside while it runs. The sandbox runs in a
    forked child: this process polls, and a thread here would make forking unsafe."""
    assert spec.limits is not None
    bases = {
        "cpu.cfs_quota_us": _mount_of("cpu"),
        "memory.limit_in_bytes": _mount_of("memory"),
        "pids.max": _mount_of("pids"),
        "cgroup.procs": _mount_of("pids"),
    }
    child = os.fork()
    if child == 0:
        try:
            limited = _limited(spec, cpus=0.5, memory=32 << 20, pids=77)
            status, _, _ = sh(limited, "sleep 1 & wait")
        finally:
            os._exit(status if "status" in locals() else 99)
    seen: dict[str, str] = {}
    most_procs = 0
    while os.waitpid(child, os.WNOHANG) == (0, 0):
        for fname, mount in bases.items():
            for path in Path(mount + spec.limits.parent).glob("*/" + fname):
                try:
                    text = path.read_text().strip()
                except OSError:  # removed since the glob (ENOENT, or ENODEV): it has ended
                    continue
                if text:
                    seen[fname] = text
                    if fname == "cgroup.procs":
                        most_procs = max(most_procs, len(text.split()))
        time.sleep(0.02)
    assert seen["cpu.cfs_quota_us"] == "50000"
    assert seen["memory.limit_in_bytes"] == str(32 << 20)
    assert seen["pids.max"] == "77"
    assert most_procs == 2  # pid 1 (sh) and its sleep; the supervisor stays out


def test_a_limit_the_kernel_refuses_is_one_error_and_leaves_nothing(
    spec: SandboxSpec, sh: ShRunner
) -> None:
    with pytest.raises(SandboxError, match=r"the kernel refused cpu\.cfs_quota_us = 500"):
        sh(_limited(spec, cpus=0.005), "true")  # below the kernel's 1 ms quota


def test_no_limits_make_no_cgroup(spec: SandboxSpec, sh: ShRunner) -> None:
    status, out, _ = sh(spec, "cat /proc/self/cgroup | grep -c memory:/$")
    assert (status, out) == (0, "1\n")  # our own cgroup namespace's root, no new cgroup
    assert spec.limits is not None
    for h in hierarchies():
        assert not os.path.exists(h.mount + spec.limits.parent)


def test_a_killed_callers_cgroup_is_swept_by_the_next_run(spec: SandboxSpec, sh: ShRunner) -> None:
    assert spec.limits is not None
    pids = _mount_of("pids")
    os.makedirs(f"{pids}{spec.limits.parent}/999999999-deadbeef")  # no such pid
    status, _, _ = sh(_limited(spec, pids=10), "true")
    assert status == 0
    assert not os.path.exists(f"{pids}{spec.limits.parent}/999999999-deadbeef")


def test_docker_spellings_of_sizes() -> None:
    assert parse_bytes("64m", "-m") == 64 << 20
    assert parse_bytes("64MiB", "-m") == 64 << 20
    assert parse_bytes("1.5g", "-m") == 3 << 29
    assert parse_bytes("1048576", "-m") == 1 << 20
    with pytest.raises(UsageError):
        parse_bytes("64x", "-m")
    with pytest.raises(UsageError, match="minimum memory limit allowed is 6MB"):
        Limits(memory=1024)
    with pytest.raises(UsageError, match="--memory-swap needs --memory"):
        Limits(memory_swap=1 << 30)
    assert Limits(memory=64 << 20).swap_total() == 128 << 20  # docker: twice the memory
    assert Limits(memory=64 << 20, memory_swap=-1).swap_total() is None


def test_v2_files(tmp_path: Path) -> None:
    """The unified hierarchy's layout, on a directory standing in for one: the
    controllers passed down each level, then the limits in v2's files."""
    (tmp_path / "cgroup.subtree_control").touch()
    h = Hierarchy(str(tmp_path), 2, frozenset({"memory", "pids", "cpu"}))
    limits = Limits(memory=64 << 20, memory_swap=96 << 20, cpus=1.5, pids=9, parent="/a/b")
    cgroup = Cgroup(limits, found=[h])
    real_mkdir = os.mkdir

    def mkdir(path: str, mode: int = 0o777) -> None:  # cgroupfs makes these files itself
        real_mkdir(path, mode)
        Path(path, "cgroup.subtree_control").touch()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "mkdir", mkdir)
        cgroup.create()
    made = Path(cgroup.dir_of("memory"))
    assert made.parent == tmp_path / "a" / "b"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "a" / "b" / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (made / "memory.max").read_text() == str(64 << 20)
    assert (made / "memory.swap.max").read_text() == str(32 << 20)
    assert (made / "cpu.max").read_text() == "150000 100000"
    assert (made / "pids.max").read_text() == "9"


def test_this_machine_is_detected() -> None:
    found = hierarchies()
    assert found, "no cgroup hierarchy mounted"
    for controller in ("memory", "pids", "cpu"):
        assert any(controller in h.controllers for h in found), controller


def _ours(spec: SandboxSpec, controller: str) -> list[str]:
    assert spec.limits is not None
    parent = _mount_of(controller) + spec.limits.parent
    return sorted(e.name for e in os.scandir(parent) if e.is_dir()) if os.path.isdir(parent) else []


def test_cgroups_made_ahead_are_each_a_cgroup_of_its_own(spec: SandboxSpec) -> None:
    """A build's RUN steps take cgroups made while the step before ran (cgroups.Spare):
    each its own, its limits written; the one made ahead and not taken is removed."""
    assert spec.limits is not None
    spare = Spare(replace(spec.limits, pids=33))
    taken = []
    try:
        taken = [spare.take() for _ in range(3)]
        cgroups = [c for c in taken if c is not None]
        assert len(cgroups) == 3 and len({c.name for c in cgroups}) == 3
        for cgroup in cgroups:
            with open(f"{cgroup.dir_of('pids')}/pids.max") as f:
                assert f.read().strip() == "33"
    finally:
        for cgroup in taken:
            assert cgroup is not None
            cgroup.remove()
        spare.close()
    spare.close()  # idempotent
    deadline = time.monotonic() + 10
    while _ours(spec, "pids") and time.monotonic() < deadline:  # (if it was still being made)
        time.sleep(0.01)
    assert _ours(spec, "pids") == []


def test_a_run_joins_the_cgroup_made_ahead_and_removes_it(spec: SandboxSpec, sh: ShRunner) -> None:
    assert spec.limits is not None
    limits = replace(spec.limits, pids=50)
    made = made_for(limits)
    assert made is not None
    assert _ours(spec, "pids") == [made.name]
    script = "n=0; for i in $(seq 100); do sleep 5 & n=$((n+1)); done; echo started $n"
    # No limits in the spec: the one in force is the made cgroup's.
    _, out, err = sh(replace(spec, limits=None, cgroup=made), script)
    assert "can't fork" in err and "started 100" not in out
    assert _ours(spec, "pids") == []  # the run removed it


def test_the_executor_runs_each_step_in_a_cgroup_made_ahead(
    spec: SandboxSpec,
    overlay,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from builder.engine.executor import Process, SandboxExecutor

    assert spec.limits is not None
    executor = SandboxExecutor(limits=replace(spec.limits, pids=20))
    script = "n=0; for i in $(seq 40); do sleep 5 & n=$((n+1)); done; echo started $n"
    process = Process(argv=("/bin/sh", "-c", script), env=(), cwd="/", user="", network="none")
    try:
        for _ in range(2):
            with open(tmp_path / "out", "w+") as out:
                executor.run(overlay(), process, out.fileno())
                out.seek(0)
                text = out.read()
                assert "can't fork" in text and "started 40" not in text  # the limit holds
            assert len(_ours(spec, "pids")) == 1  # only the next step's, made ahead
    finally:
        executor.close()
    deadline = time.monotonic() + 10
    while _ours(spec, "pids") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _ours(spec, "pids") == []


def test_procs_files_name_the_other_process_cgroups_where_they_are_mounted() -> None:
    """How a warm server's child and a launched supervisor join their caller's cgroups:
    each of the caller's cgroups that is not ours, as the cgroup.procs file under the
    hierarchy mounted here (co-mounted controllers and named hierarchies too). Checked
    on our own cgroups, taken as another process's: each file found lists our pid."""
    ours = Path("/proc/self/cgroup").read_text()
    assert procs_files(ours, ours) == []  # nothing to join
    found = procs_files(ours + "99:no-such-controller:/x\n", "")  # not mounted: left out
    assert not any(p.endswith("/x/cgroup.procs") for p in found), found
    # A hierarchy is listed in /proc/self/cgroup while it is mounted (v1) or exists (v2):
    # each of ours has its file.
    assert len(found) == len(ours.splitlines()), (found, ours)
    for procs in found:
        assert str(os.getpid()) in Path(procs).read_text().split(), procs


def _join_in_a_fork(dirs: list[str], threads: int) -> list[str]:
    """Fork, start `threads` sleeping threads in the child, move_here(dirs) there; the
    lines of /proc/PID/task/TID/cgroup of each of the child's threads."""
    import threading

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            stop = threading.Event()
            for _ in range(threads):
                threading.Thread(target=stop.wait, daemon=True).start()
            move_here(dirs)
            lines = []
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/cgroup") as f:
                    lines += [f"{tid} {line.strip()}" for line in f]
            os.write(write_fd, "\n".join(lines).encode())
            stop.set()
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    return text.splitlines()


@pytest.mark.parametrize("threads", [0, 2])
def test_joining_moves_every_thread_of_the_caller(cgroup_parent: str, threads: int) -> None:
    """A single-threaded caller moves its thread (v1 `tasks`, no global lock); one with
    threads moves them all (cgroup.procs): each thread ends up in the cgroup, in a v1
    hierarchy and in the v2 one (this machine's is empty, which joining does not need)."""
    name = f"{cgroup_parent.strip('/')}-join-{threads}"
    dirs = [f"{_mount_of('pids')}/{name}"]
    dirs += [h.mount + "/" + name for h in hierarchies() if h.version == 2][:1]
    for path in dirs:
        os.mkdir(path)
    try:
        lines = _join_in_a_fork(dirs, threads)
        for path in dirs:
            hierarchy = ":pids:" if "/pids/" in path else "0::"
            found = [line for line in lines if hierarchy in line]
            assert len(found) == threads + 1, lines
            assert all(line.endswith(f"{hierarchy}/{name}") for line in found), lines
    finally:
        for path in dirs:
            os.rmdir(path)
