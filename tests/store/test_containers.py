"""root/containers and root/mounts/cache: writable dirs that no image reaches."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.store import Store
from builder.store.container_record import ContainerConfig
from builder.store.containers import NoSuchContainer


def test_containers_create_list_remove(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    a, b = store.containers.create(), store.containers.create()
    assert a.id != b.id and len(a.id) == 64
    assert a.home == store.paths.containers / a.id
    assert a.upper.is_dir() and a.work.is_dir()
    assert sorted(c.id for c in store.containers.list()) == sorted([a.id, b.id])
    store.containers.remove(a)
    assert [c.id for c in store.containers.list()] == [b.id]
    (b.upper / "file").write_bytes(b"1234")
    assert store.containers.clear() >= 4
    assert store.containers.list() == []


def test_a_new_container_is_created_with_the_fewest_files(tmp_path: Path) -> None:
    """`builder run` pays for each file made (issue 9): a new container has its config,
    its owner lock and its overlay dirs; its state is "created" without a state file."""
    store = Store.open(tmp_path / "s")
    made = store.containers.create(ContainerConfig("web", "img", ("true",), 0.0))
    assert sorted(p.name for p in made.home.iterdir()) == [
        "config.json",
        "owner.lock",
        "upper",
        "work",
    ]
    assert made.state().status == "created" and made.state().pid == 0


def test_no_containers_dir_yet(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    assert store.containers.list() == [] and store.containers.clear() == 0


def test_cache_mount_made_once_with_the_first_owner_and_mode(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    old = os.umask(0)
    try:
        path = store.cache_mounts.get("pip", mode=0o700, uid=1000, gid=1001)
        again = store.cache_mounts.get("pip", mode=0o755, uid=0, gid=0)
    finally:
        os.umask(old)
    assert path == again and path.parent == store.paths.cache_mounts
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 1000, 1001)
    other = store.cache_mounts.get("npm", mode=0o755, uid=0, gid=0)
    assert other != path
    assert sorted(store.paths.cache_mounts.iterdir()) == sorted([path, other])  # no staging
    store.cache_mounts.clear()
    assert list(store.paths.cache_mounts.iterdir()) == []


def test_a_name_is_taken_once_under_concurrent_creates(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    for i in range(150):  # a longer scan widens the window a missing lock would open
        os.close(store.containers.create(ContainerConfig(f"c{i}", "img", ("true",), 0.0)).owner_fd)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def claim() -> None:
        barrier.wait()
        try:
            made = store.containers.create(ContainerConfig("same", "img", ("true",), 0.0))
            os.close(made.owner_fd)
            outcomes.append("made")
        except UsageError as err:
            outcomes.append("taken" if "already in use" in str(err) else str(err))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["made"] + ["taken"] * 5


def test_find_by_id_name_and_unique_prefix(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    a = store.containers.create(ContainerConfig("alpha", "img", ("true",), 0.0))
    b = store.containers.create(ContainerConfig("", "img", ("true",), 0.0))
    assert store.containers.find(a.id) == a and store.containers.find("alpha") == a
    assert store.containers.find(b.id[:6]) == b
    assert a.running() and a.state().status == "created"  # its creator holds the owner lock
    os.close(a.owner_fd)
    assert not a.running()
    with pytest.raises(NoSuchContainer, match="No such container: nope"):
        store.containers.find("nope")
    with pytest.raises(NoSuchContainer, match="No such container"):
        store.containers.find("")
    firsts = [c.id[0] for c in [a, b, *(store.containers.create() for _ in range(16))]]
    shared = next(ch for ch in firsts if firsts.count(ch) > 1)  # 18 ids, 16 digits
    with pytest.raises(NoSuchContainer, match=f"multiple IDs found with provided prefix: {shared}"):
        store.containers.find(shared)
    assert (b.config() or pytest.fail()).name  # a generated name, as docker gives one
