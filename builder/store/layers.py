"""root/layers: unpacked layers in overlay form, one dir per diff_id, the lowerdirs of every
overlay a build step or a container runs on. Made from the layout's blobs when an image
comes in (import, pull and load unpack at once, as docker does: a cold build's first step
then mounts what is there, instead of paying ~0.1 s for a busybox layer's 400 entries),
else on first use (an image whose layers came another way: a build's own, a cache import)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest, DigestError
from builder.layer.tree import remove_tree
from builder.store.atomic import fsync_dir
from builder.store.blobs import BlobStore
from builder.store.finishing import Finisher
from builder.store.locks import UpdateLock
from builder.store.paths import StorePaths
from builder.store.removal import remove
from builder.store.scratch import Scratch
from builder.store.space import writing


class UnpackedLayers:
    def __init__(
        self, paths: StorePaths, blobs: BlobStore, lock: UpdateLock, scratch: Scratch
    ) -> None:
        self._paths = paths
        self._blobs = blobs
        self._lock = lock
        self._scratch = scratch
        # Stages built at once may need the same base layer: one thread unpacks it while
        # the others wait for it (another process's unpack is settled by `adopt`).
        self._unpacking: dict[Digest, threading.Lock] = {}
        self._guard = threading.Lock()

    def has(self, diff_id: Digest) -> bool:
        return self._paths.layer(diff_id).is_dir()

    def get(self, blob: Descriptor, diff_id: Digest) -> Path:
        """layers/<diff_id hex>, unpacked from the blob on first use (verified both ways:
        the blob against its digest, the tar against the diff_id)."""
        target = self._paths.layer(diff_id)
        if target.is_dir():
            return target
        with self._guard:
            lock = self._unpacking.setdefault(diff_id, threading.Lock())
        with lock:
            if target.is_dir():  # another thread unpacked it meanwhile
                return target
            return self._unpack(blob, diff_id)

    def _unpack(self, blob: Descriptor, diff_id: Digest) -> Path:
        from builder.layer.apply import unpack_layer  # lazily: tarfile is slow to import

        staging = self._scratch.new_dir("unpack")
        try:
            what = f"the unpacked layer {diff_id}"
            with writing(what, self._paths.root), self._blobs.open(blob.digest) as stream:
                unpack_layer(stream, staging / "root", expected_diff_id=diff_id)
                stream.read()  # to EOF, so the blob digest is verified too
            return self.adopt(diff_id, staging / "root")
        finally:
            remove_tree(staging, ignore_errors=True)

    def adopt(self, diff_id: Digest, src: Path, *, background: Finisher | None = None) -> Path:
        """Move an overlay-form dir in (a rename, no copy); if one is there, drop src.
        `background`: the rename is made durable there (a build's layer: the dir's fsync
        commits ext4's journal, 0.2 s after a COPY of 5,000 files, while the next step
        runs), before the records the build submits after it."""
        target = self._paths.layer(diff_id)
        with self._lock.held():
            if target.is_dir():
                remove_tree(src, ignore_errors=True)
                return target
            try:
                os.rename(src, target)
            except OSError as err:
                raise StoreError(
                    f"cannot move {src} into the store: {err.strerror} "
                    "(it must be on the store's filesystem)"
                ) from None
            if background is None:
                fsync_dir(self._paths.layers)
            else:
                background.submit(functools.partial(fsync_dir, self._paths.layers))
        return target

    def diff_ids(self) -> Iterator[Digest]:
        for path in self._paths.layers.iterdir():
            with contextlib.suppress(DigestError):  # a stray name is no layer of ours
                yield Digest.from_hex(path.name)

    def delete(self, diff_id: Digest) -> int:
        """Remove the unpacked dir (the blob stays); returns the bytes freed."""
        return remove(self._paths.layer(diff_id))
