"""root/layers: unpacked layers in overlay form, one dir per diff_id, the lowerdirs of every
overlay a build step or a container runs on. Made from the layout's blobs when an image
comes in (import, pull and load unpack at once, as docker does: a cold build's first step
then mounts what is there, instead of paying ~0.1 s for a busybox layer's 400 entries),
else on first use (an image whose layers came another way: a build's own, a cache import).

An unpacked layer is trusted when it was made since this boot (its dir's ctime, set by the
rename that adopted it, is after the boot time) or once a syncfs has put it on disk whole
(an empty file layers.synced/<hex>, made after the sync). One from before this boot that was
never synced may have lost its files' data to a crash (ext4 writes new files' blocks up to
30 s later, its rename sooner), so it is put aside and unpacked again from its blob, which
was fsynced. Build steps' dirs are synced behind the build (`sync`, on the finisher):
their overlays are mounted volatile, so no step waits for the file system to be written.
Layers unpacked by import, load or a build's first use are marked when a later sync of the
same process covers them; the others are unpacked again after a reboot."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest, DigestError
from builder.layer.tree import remove_tree
from builder.store.atomic import fsync_dir, syncfs
from builder.store.blobs import BlobStore
from builder.store.locks import UpdateLock
from builder.store.paths import StorePaths
from builder.store.removal import remove
from builder.store.scratch import Scratch
from builder.store.space import writing

if TYPE_CHECKING:
    from builder.store.finishing import Finisher


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
        # How many layers this process adopted, and how many of them a `sync` covered.
        self._adopted = 0
        self._synced = 0

    def has(self, diff_id: Digest) -> bool:
        return self._trusted(diff_id)

    def trusted(self, diff_id: Digest) -> Path | None:
        """layers/<diff_id hex> if it is there and trusted, else None: has() and get() in
        one stat, for a build step that mounts every layer of its image (17 of them by the
        last step of many-steps, a stat each, twice, before)."""
        return self._paths.layer(diff_id) if self._trusted(diff_id) else None

    def _trusted(self, diff_id: Digest) -> bool:
        try:
            st = os.stat(self._paths.layer(diff_id))
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        return st.st_ctime >= _boot_time() or self._marked_synced(diff_id)

    def get(self, blob: Descriptor, diff_id: Digest) -> Path:
        """layers/<diff_id hex>, unpacked from the blob on first use (verified both ways:
        the blob against its digest, the tar against the diff_id), or again when the one
        there is not trusted (see the module's docstring)."""
        target = self._paths.layer(diff_id)
        if self._trusted(diff_id):
            return target
        with self._guard:
            lock = self._unpacking.setdefault(diff_id, threading.Lock())
        with lock:
            if self._trusted(diff_id):  # another thread unpacked it meanwhile
                return target
            self._put_aside(diff_id)
            return self._unpack(blob, diff_id)

    def _put_aside(self, diff_id: Digest) -> None:
        """Move an untrusted dir out of the way, asking again under the update lock: another
        process may just have unpacked it again."""
        target = self._paths.layer(diff_id)
        with self._lock.held():
            if not os.path.lexists(target) or self._trusted(diff_id):
                return
            aside = self._scratch.new_dir("untrusted")
            os.rename(target, aside / "root")
        self._scratch.discard(aside)

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
        """Move an overlay-form dir in (a rename, no copy); if a trusted one is there, drop
        src (an untrusted one is put aside for it). `background` (a build's layer): the
        rename and the dir's contents are made durable there, by `sync`, while the next
        step runs (the dir's fsync alone commits ext4's journal: 0.2 s after a COPY of
        5,000 files), before the records the build submits after it."""
        target = self._paths.layer(diff_id)
        with self._lock.held():
            if self._trusted(diff_id):
                remove_tree(src, ignore_errors=True)
                return target
            self._put_aside(diff_id)
            try:
                os.rename(src, target)
            except OSError as err:
                raise StoreError(
                    f"cannot move {src} into the store: {err.strerror} "
                    "(it must be on the store's filesystem)"
                ) from None
            self._adopted += 1
            if background is None:
                fsync_dir(self._paths.layers)
            else:
                background.submit(self.sync)
        return target

    def sync(self) -> None:
        """Make every layer dir adopted so far durable, contents and all: one syncfs of the
        store's file system. A build step's upper dir is mounted "volatile" (its unmount
        would sync the whole file system on the step's critical path, 5 ms to over a second
        on a busy disk), so its step's cache record is written after this, on the finisher
        thread (engine/steps/layer_step.commit_layer). One call covers every layer adopted
        before it began: a finisher that fell behind syncs once for several steps. Every
        layer dir that was there when it began and is not marked yet (this process's, and
        those an import or another process unpacked since the boot) is then marked synced,
        so that it is trusted after a reboot too."""
        upto = self._adopted
        if self._synced >= upto:
            return
        try:
            unmarked = self._unmarked()
            syncfs(self._paths.layers)
            self._paths.synced_layers.mkdir(exist_ok=True)
            for diff_id in unmarked:
                if self._trusted(diff_id):  # not one from before the boot (unchanged since)
                    os.close(os.open(self._paths.synced_layer(diff_id), os.O_CREAT | os.O_WRONLY))
        except OSError as err:
            raise StoreError(
                f"cannot write the store's unpacked layers to disk: {err.strerror}"
            ) from None
        self._synced = upto

    def _unmarked(self) -> list[Digest]:
        """The layer dirs with no synced marker. Two listings, not a stat per layer: a
        store holds hundreds of layers, and this runs on every build step's sync (a stat
        and two pathlib joins each took 44 ms of CPU per step, against the step's own
        thread, in a store of 550)."""
        try:
            marked = set(os.listdir(self._paths.synced_layers))
        except FileNotFoundError:
            marked = set()
        unmarked = []
        for name in os.listdir(self._paths.layers):
            if name not in marked:
                with contextlib.suppress(DigestError):  # a stray name is no layer of ours
                    unmarked.append(Digest.from_hex(name))
        return unmarked

    def _marked_synced(self, diff_id: Digest) -> bool:
        return self._paths.synced_layer(diff_id).exists()

    def diff_ids(self) -> Iterator[Digest]:
        for path in self._paths.layers.iterdir():
            with contextlib.suppress(DigestError):  # a stray name is no layer of ours
                yield Digest.from_hex(path.name)

    def delete(self, diff_id: Digest) -> int:
        """Remove the unpacked dir (the blob stays); returns the bytes freed."""
        freed = remove(self._paths.layer(diff_id))
        self._paths.synced_layer(diff_id).unlink(missing_ok=True)
        return freed


@functools.cache
def _boot_time() -> float:
    """When this machine booted, on the wall clock that stamps ctimes (/proc/stat btime)."""
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return float("inf")  # no boot time: nothing counts as made since boot
