"""The `auto` snapshotter's probe (sandbox/snapshotter.py): paid once per store, and as
root once per file system and boot (the host record), which a fresh store reads; a damaged
or foreign record is a miss, never a wrong answer."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.sandbox import snapshotter


@pytest.fixture(autouse=True)
def host_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run" / "snapshotter"
    monkeypatch.setattr(snapshotter, "HOST_DIR", path)
    return path


class Store:
    """A store's dir as the probe sees it: its record and a scratch that counts probes."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.record = root / "snapshotter.json"
        self.probes = 0

    def scratch(self, prefix: str) -> Path:
        self.probes += prefix == "probe"
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))

    def choose(self) -> snapshotter.Snapshotter:
        return snapshotter.choose(None, self.scratch, self.record)


def _only_file(directory: Path) -> Path:
    (entry,) = directory.iterdir()
    return entry


def test_a_fresh_store_on_a_probed_file_system_does_not_probe(
    tmp_path: Path, host_dir: Path
) -> None:
    first = Store(tmp_path / "a")
    assert first.choose() == "overlayfs" and first.probes == 1
    assert first.choose() == "overlayfs" and first.probes == 1  # the store's record
    host = json.loads(_only_file(host_dir).read_text())
    assert host["snapshotter"] == "overlayfs" and host["key"]["kernel"]
    second = Store(tmp_path / "b")
    assert second.choose() == "overlayfs" and second.probes == 0  # the host's record
    assert json.loads(second.record.read_text())["snapshotter"] == "overlayfs"


def test_the_host_record_is_what_a_fresh_store_reads(tmp_path: Path, host_dir: Path) -> None:
    Store(tmp_path / "a").choose()
    entry = _only_file(host_dir)
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "snapshotter": "native"}))
    fresh = Store(tmp_path / "b")
    assert fresh.choose() != "overlayfs" and fresh.probes == 0


def _foreign(text: str) -> str:
    record = json.loads(text)
    record["key"]["fs"] = ["0:99", "tmpfs", "tmpfs", "rw"]
    return json.dumps({**record, "snapshotter": "native"})


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "",
        lambda text: text[: len(text) // 2],
        lambda text: "[1, 2]",
        lambda text: json.dumps({**json.loads(text), "snapshotter": "zfs"}),
        # Another file system's answer under this name (a reused device number).
        lambda text: _foreign(text),
    ],
)
def test_a_damaged_or_foreign_host_record_is_a_miss_and_is_written_again(
    tmp_path: Path, host_dir: Path, damage: Callable[[str], str]
) -> None:
    Store(tmp_path / "a").choose()
    entry = _only_file(host_dir)
    good = entry.read_text()
    entry.write_text(damage(good))
    fresh = Store(tmp_path / "b")
    assert fresh.choose() == "overlayfs" and fresh.probes == 1
    assert json.loads(entry.read_text()) == json.loads(good)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_another_file_system_is_probed_for_itself(
    tmp_path: Path, host_dir: Path, tmpfs: Path
) -> None:
    Store(tmp_path / "a").choose()
    other = Store(tmpfs / "store")
    other.choose()
    assert other.probes == 1
    assert len(list(host_dir.iterdir())) == 2


def test_an_unwritable_host_dir_leaves_the_store_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(snapshotter, "HOST_DIR", blocked / "snapshotter")
    store = Store(tmp_path / "a")
    assert store.choose() == "overlayfs" and store.probes == 1
    assert json.loads(store.record.read_text())["snapshotter"] == "overlayfs"
