"""Garbage collection: mark from index.json and cache records, sweep blobs, layers, tmp."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import StoreError
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType

if TYPE_CHECKING:
    from builder.store.store import Store

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TMP_PID = re.compile(r"-(\d+)-[^-]*$")


def _digests_in(value: Any, out: set[str]) -> None:
    """Every digest string anywhere in a JSON value (cache records have no fixed schema)."""
    if isinstance(value, str):
        if _DIGEST.fullmatch(value):
            out.add(value.removeprefix("sha256:"))
    elif isinstance(value, dict):
        for v in value.values():
            _digests_in(v, out)
    elif isinstance(value, list):
        for v in value:
            _digests_in(v, out)


def _tree_size(path: Path) -> int:
    total = 0
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        for dirpath, dirnames, filenames in os.walk(path):
            for name in filenames + dirnames:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    except OSError:
        pass
    return total


def _remove(path: Path) -> int:
    size = _tree_size(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return size


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Marker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.blobs: set[str] = set()
        self.layers: set[str] = set()

    def descriptor(self, media_type: str, digest: Digest) -> None:
        if digest.algorithm != "sha256" or digest.hex in self.blobs:
            return
        self.blobs.add(digest.hex)
        if not self.store.has_blob(digest):
            return
        if media_type not in (
            MediaType.OCI_MANIFEST,
            MediaType.DOCKER_MANIFEST,
            MediaType.OCI_INDEX,
            MediaType.DOCKER_MANIFEST_LIST,
        ):
            return
        try:
            doc = json.loads(self.store.read_blob(digest))
        except (ValueError, StoreError):
            return  # a corrupt document keeps itself, nothing more; fsck reports it
        if not isinstance(doc, dict):
            return
        children = list(doc.get("manifests") or []) + list(doc.get("layers") or [])
        if isinstance(doc.get("config"), dict):
            children.append(doc["config"])
            self._config(doc["config"])
        for child in children:
            with contextlib.suppress(Exception):
                self.descriptor(str(child["mediaType"]), Digest(child["digest"]))

    def _config(self, desc: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            doc = json.loads(self.store.read_blob(Digest(desc["digest"])))
            for diff_id in doc["rootfs"]["diff_ids"]:
                self.layers.add(Digest(diff_id).hex)


def collect(store: Store, *, prune_cache: bool = False, prune_containers: bool = False) -> int:
    lease_fd = os.open(store.root / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lease_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise StoreError("a build is using the store; run gc when it ends") from None
            raise
        with store.lock():
            freed = 0
            if prune_containers:  # no run holds a lease now: none of them is in use
                freed += _remove_children(store.root / "containers")
            if prune_cache:
                freed += _remove_children(store.root / "mounts" / "cache")
            return freed + _collect_locked(store, prune_cache)
    finally:
        os.close(lease_fd)


def _remove_children(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(_remove(child) for child in directory.iterdir())


def _collect_locked(store: Store, prune_cache: bool) -> int:
    freed = 0
    mark = _Marker(store)
    for d in store._read_index().manifests:
        mark.descriptor(str(d.media_type), d.digest)
    for record in sorted(store.cache.glob("*.json")):
        if prune_cache:
            freed += _remove(record)
            continue
        try:
            found: set[str] = set()
            _digests_in(json.loads(record.read_bytes()), found)
        except (OSError, ValueError):
            continue
        # A record names blobs and diff_ids alike; keep whatever it names of either kind.
        mark.blobs |= found
        mark.layers |= found
    for blob in store.blobs.iterdir():
        if blob.name not in mark.blobs:
            freed += _remove(blob)
    for layer in store.layers.iterdir():
        if layer.name not in mark.layers:
            freed += _remove(layer)
    me = os.getpid()
    for entry in store.tmp.iterdir():
        m = _TMP_PID.search(entry.name)
        pid = int(m.group(1)) if m else None
        if pid is None or (pid != me and not _pid_alive(pid)):
            freed += _remove(entry)
    return freed
