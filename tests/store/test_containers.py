"""root/containers and root/mounts/cache: writable dirs that no image reaches."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.store import Store


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
