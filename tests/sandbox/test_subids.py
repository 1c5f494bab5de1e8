"""The lease of an id range for `--userns=auto` (sandbox/subids.py): slots cut from the
user `containers`' subordinate ranges, held by flock so two containers never share one and
a dead holder's slot is free again. Ranges and lease records live in a test's temp dir."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import subids
from builder.sandbox.subids import SIZE, IdRange


@pytest.fixture
def ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/etc/subuid and /etc/subgid stand-ins with two slots for `containers`."""
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text(f"someone:100000:65536\ncontainers:500000:{2 * SIZE + 10}\n")
    subgid.write_text(f"containers:700000:{2 * SIZE}\n")
    monkeypatch.setattr(subids, "SUBUID", str(subuid))
    monkeypatch.setattr(subids, "SUBGID", str(subgid))
    leases = tmp_path / "leases"
    return leases


def test_slots_are_cut_from_the_containers_ranges(ranges: Path) -> None:
    assert subids.slots() == [IdRange(500000, 700000), IdRange(500000 + SIZE, 700000 + SIZE)]


def test_two_leases_at_once_get_different_slots_and_a_release_frees_one(ranges: Path) -> None:
    first = subids.lease(str(ranges))
    second = subids.lease(str(ranges))
    try:
        assert first.ids != second.ids
        assert sorted(subids.leased(str(ranges)), key=lambda r: r.uid) == [first.ids, second.ids]
        with pytest.raises(SandboxError, match=r"all 2 ranges of containers .* are in use"):
            subids.lease(str(ranges))
        second.release()
        assert subids.leased(str(ranges)) == [first.ids]
        third = subids.lease(str(ranges))
        assert third.ids == second.ids
        third.release()
    finally:
        first.release()
        second.release()
    assert subids.leased(str(ranges)) == [] and list(ranges.iterdir()) == []


def test_a_killed_holders_slot_is_free_again(ranges: Path) -> None:
    # The holder is a fresh interpreter that waits to be killed. (It was a fork calling
    # os.pause, which does not exist: the holder died at once, and the check that its slot was
    # held raced its exit.)
    holder = (
        "import os, signal, sys; from builder.sandbox import subids;"
        " subids.SUBUID, subids.SUBGID = sys.argv[1], sys.argv[2];"
        " subids.lease(sys.argv[3]); os.write(1, b'k'); signal.pause()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, subids.SUBUID, subids.SUBGID, str(ranges)],
        stdout=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.read(1) == b"k"
            time.sleep(0.2)  # still held a moment later: the holder lives until it is killed
            assert len(subids.leased(str(ranges))) == 1
        finally:
            proc.kill()
    assert len(list(ranges.iterdir())) == 1  # its record stays, stale
    assert subids.leased(str(ranges)) == []
    reclaimed = subids.lease(str(ranges))
    assert reclaimed.ids == subids.slots()[0]
    reclaimed.release()


def test_no_range_for_containers_is_a_clear_error(
    ranges: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("someone:100000:65536\n")
    monkeypatch.setattr(subids, "SUBUID", str(empty))
    with pytest.raises(SandboxError, match=r"no range of 65536 ids for the user containers in"):
        subids.lease(str(ranges))
    assert not ranges.exists()  # nothing made
