"""tmp/: entries carry their maker's pid; a sweep removes only what dead processes left."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from builder.store import scratch as scratch_module
from builder.store.scratch import Scratch, owner_gone, process_start


def test_sweep_removes_only_dead_processes_leftovers(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    live = scratch.new_dir("upper")
    assert f"-{os.getpid()}-" in live.name  # and our start time after it
    (live / "f").write_bytes(b"12345")
    dead = tmp_path / "upper-999999999-abc"  # a pid that cannot be alive
    dead.mkdir()
    (dead / "f").write_bytes(b"123")
    nameless = tmp_path / "junk"
    nameless.write_bytes(b"1")
    assert scratch.sweep() >= 4
    assert sorted(tmp_path.iterdir()) == [live]


def test_new_name_is_free_and_ours(tmp_path: Path) -> None:
    path = Scratch(tmp_path).new_name("blob")
    assert path.parent == tmp_path and not path.exists()
    assert path.name.startswith(f"blob-{os.getpid()}-")


def test_an_owner_is_its_pid_and_start_time(tmp_path: Path) -> None:
    """A pid alone is not enough: after a kill, another process may get it."""
    scratch = Scratch(tmp_path)
    me, start = os.getpid(), process_start(os.getpid())
    assert start is not None
    mine = tmp_path / f"upper-{me}-{start}-abc"
    reused = tmp_path / f"upper-{me}-{start + 1}-abc"  # our pid, another start: not us
    nameless = tmp_path / "junk"
    for entry in (mine, reused, nameless):
        entry.mkdir()
    scratch.sweep(ownerless=False)  # what any command does: leaves what names no owner
    assert sorted(tmp_path.iterdir()) == [nameless, mine]


def test_a_forked_child_names_its_entries_as_its_own(tmp_path: Path) -> None:
    """owner_tag is read once per process: a fork (a server's build) must not keep the
    parent's, or a sweep would take the child's live work for the parent's."""
    parent_tag = scratch_module.owner_tag()  # read, and kept, before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its tag and its own pid and start time
        try:
            me = os.getpid()
            line = f"{scratch_module.owner_tag()} {me}-{process_start(me)}"
            os.write(write, line.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child_tag, expected = f.read().split()
    os.waitpid(pid, 0)
    assert child_tag == expected != parent_tag
    assert scratch_module.owner_tag() == parent_tag == f"{os.getpid()}-{process_start(os.getpid())}"


def test_a_zombie_owner_is_gone() -> None:
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while process_start(child.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # exited but not reaped: a zombie, which owns nothing
        assert owner_gone(f"upper-{child.pid}-1-abc")
    finally:
        child.wait()
    assert owner_gone(f"upper-{os.getpid()}-{process_start(os.getpid())}-abc") is False


def test_discarded_dirs_go_in_the_background_and_settle_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = Scratch(tmp_path)
    scratch.settle()  # nothing discarded: returns at once
    dirs = [scratch.new_dir("work") for _ in range(20)]
    for d in dirs:
        (d / "sub" / "deeper").mkdir(parents=True)
        (d / "sub" / "f").write_bytes(b"x")
    caller = threading.get_ident()
    removers = set()
    original = scratch_module.remove_tree

    def noting(path: Path, *, ignore_errors: bool = False) -> None:
        removers.add(threading.get_ident())
        original(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(scratch_module, "remove_tree", noting)
    for d in dirs:
        scratch.discard(d)
    scratch.settle()
    assert list(tmp_path.iterdir()) == [] and removers and caller not in removers
    again = scratch.new_dir("work")  # a discard after the remover stopped starts another
    scratch.discard(again)
    scratch.settle()
    assert not again.exists()


def test_one_remover_thread_serves_a_build_s_discards_and_a_forked_child_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting a thread per discard cost a build step 0.3-2 ms: the remover waits for
    more. A fork (a server's build) has no copy of it, and starts its own."""
    scratch = Scratch(tmp_path)
    removers: list[threading.Thread] = []  # kept: a finished thread's ident may be reused
    original = scratch_module.remove_tree

    def noting(path: Path, *, ignore_errors: bool = False) -> None:
        removers.append(threading.current_thread())
        original(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(scratch_module, "remove_tree", noting)
    for _ in range(3):  # a step's dirs, then the next step's, after a pause
        doomed = scratch.new_dir("work")
        scratch.discard(doomed)
        while doomed.exists():
            time.sleep(0.01)
        time.sleep(0.05)
    assert len(removers) == 3 and len(set(removers)) == 1
    scratch.settle()  # the build's end: no thread is left (the process exits sooner)
    assert not removers[0].is_alive()
    pid = os.fork()
    if pid == 0:
        try:
            doomed = scratch.new_dir("child")
            scratch.discard(doomed)
            deadline = time.monotonic() + 10  # (not settle(): it would wait for ever)
            while doomed.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os._exit(0 if not doomed.exists() else 1)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
