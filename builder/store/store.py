"""The local store: the one object callers open, made of parts named after where their bytes
live (see paths.py for the directory of each):

  store.layout        the OCI image layout: blobs (a BlobStore) and index.json (the names)
  store.layers        unpacked layers, the lowerdirs of overlays
  store.cache         the build cache, typed records
  store.variants      each layer's blob in each compression, by diff_id
  store.containers    `builder run`'s writable layers
  store.cache_mounts  RUN --mount=type=cache dirs
  store.scratch       tmp/, where work is staged before it is renamed in

What spans parts is here: opening, the gc lease, an image from its name, writing a layer and an
image, and gc.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from builder import record
from builder.errors import StoreError
from builder.image.compression import LayerCompression
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.image import Image, Layer
from builder.image.manifest import Manifest
from builder.image.mediatypes import Compression, MediaType
from builder.store.cache import BuildCache
from builder.store.containers import CacheMounts, Containers
from builder.store.finishing import Finisher
from builder.store.layers import UnpackedLayers
from builder.store.layout import OciLayout
from builder.store.locks import GcLock, UpdateLock
from builder.store.paths import StorePaths
from builder.store.scratch import Scratch
from builder.store.space import NO_SPACE, writing
from builder.store.variants import LayerVariants

if TYPE_CHECKING:
    from builder.store.fsck import Report

# A base pulled in Docker schema 2 keeps its layer bytes; the OCI manifest of an image built
# on it names them by their OCI types (as BuildKit does), not a mix of the two vocabularies.
_OCI_LAYER_TYPES = {
    MediaType.DOCKER_LAYER: MediaType.OCI_LAYER_GZIP,
    MediaType.DOCKER_FOREIGN_LAYER: MediaType.OCI_LAYER_NONDIST_GZIP,
}


def _oci_layer(layer: Descriptor) -> Descriptor:
    oci = (
        _OCI_LAYER_TYPES.get(layer.media_type) if isinstance(layer.media_type, MediaType) else None
    )
    return record.replace(layer, media_type=oci) if oci is not None else layer


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = StorePaths(root)
        # Per-instance (not global) so nested holds in one process do not deadlock.
        self._lock = UpdateLock(self.paths.lock)
        self._gc_lock = GcLock(self.paths.gc_lock)
        self.scratch = Scratch(self.paths.tmp)
        self.layout = OciLayout(self.paths, self._lock, self.scratch)
        self.layers = UnpackedLayers(self.paths, self.layout, self._lock, self.scratch)
        self.cache = BuildCache(self.paths)
        self.variants = LayerVariants(self.paths, self.layout)
        self.containers = Containers(self.paths)
        self.cache_mounts = CacheMounts(self.paths)
        self.finishing = Finisher()

    @classmethod
    def open(cls, root: Path) -> Store:
        """Open the store at `root`, creating an empty layout if there is none."""
        root = Path(root)
        paths = StorePaths(root)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not paths.oci_layout_file.exists():
                stray = [p.name for p in root.iterdir() if p.name not in paths.made_before_layout]
                if stray:
                    raise StoreError(f"{root} is not an image store (no oci-layout file)")
            for d in paths.created_dirs():
                d.mkdir(parents=True, exist_ok=True)
            store = cls(root)
            store.layout.create()
        except OSError as err:
            raise StoreError(f"cannot open store {root}: {err.strerror or err}") from None
        return store

    # -- locks -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold while building or running: gc() refuses to run while any lease is held, so
        blobs written but not yet tagged, and layers under a container, are not swept.
        Background blob work (store/finishing) ends before the lease does, even when the
        build failed: a gc never sees a record appear for a blob it has just swept; so does
        the removal of scratch dirs the work discarded (store/scratch)."""
        with self._gc_lock.lease():
            try:
                yield
            finally:
                self.finishing.settle()
                self.scratch.settle()

    # -- across parts ----------------------------------------------------------------------

    def image(self, ref: str | Descriptor) -> Image:
        """The image a name (ref, manifest digest, image ID prefix) or a descriptor names.

        ImageNotFound for an unknown name; StoreError for a missing or malformed blob."""
        desc = self.layout.resolve(ref) if isinstance(ref, str) else ref
        return self.layout.image(desc)

    def tmp_dir(self, prefix: str) -> Path:
        """A new private dir under tmp/, named with our pid so gc can tell it is live."""
        return self.scratch.new_dir(prefix)

    def sweep_scratch(self) -> int:
        """Remove the tmp/ entries whose owner process is gone (a killed build, import or
        run left them); returns the bytes freed. Under the update lock, so two commands do
        not remove the same entry at once; a live owner's entries are never touched."""
        with self._lock.held():
            return self.scratch.sweep(ownerless=False)

    def put_layer(
        self,
        src_dir: Path,
        compression: Compression = Compression.ZSTD,
        *,
        mtime_clamp: int | None = None,
        level: int | None = None,
        previous: Descriptor | None = None,
        keep_frames: bool = False,
        background: bool = False,
    ) -> tuple[Descriptor, Digest]:
        """Write `src_dir` as a layer blob, streamed; returns (layer descriptor, diff_id).

        `mtime_clamp` (SOURCE_DATE_EPOCH) caps every mtime in the blob; `src_dir` is not
        changed, so an adopted layer dir keeps its real times. `level` None is the
        compression's default. The blob is recorded as the layer's variant of its kind.
        `previous`, the blob of an earlier version of the layer, lends its unchanged frames
        (when its frame index was kept); `keep_frames` keeps this blob's index for the next.
        `background`: the blob's fsync and rename, and its records, are left to
        `self.finishing` (the returned descriptor names a blob that is not in place until
        `finish()`; a record naming it must be submitted there too).
        """
        from builder.layer.frames import PreviousBlob
        from builder.layer.write import write_layer  # lazily: the CLI starts without it

        lender = None
        if previous is not None:
            index = self.cache.frames(previous.digest)
            if index is not None:
                lender = PreviousBlob(self.paths.blob(previous.digest), index)
        with writing("a layer blob", self.root), self.layout.writer() as w:
            digests = write_layer(
                src_dir,
                w,
                compression,
                mtime_clamp=mtime_clamp,
                level=level,
                previous=lender,
                identify=keep_frames,
            )
            desc = w.seal(digests.media_type)
        asked = LayerCompression(compression, level)

        def finish() -> None:
            with writing("a layer blob", self.root):
                try:
                    w.commit(digests.media_type)
                except OSError as err:
                    if err.errno in NO_SPACE:
                        raise
                    raise StoreError(
                        f"cannot put layer blob {desc.digest} in the store: {err.strerror}"
                    ) from None
                # Only once the blob is in place: a record names nothing missing.
                if keep_frames and digests.frames is not None:
                    self.cache.keep_frames(desc.digest, digests.frames)
                self.variants.record(digests.diff_id, desc, asked.effective_level)

        if background:
            self.finishing.submit(finish, cleanup=lambda: w.abort(sealed_too=True))
        else:
            try:
                finish()
            finally:
                w.abort(sealed_too=True)  # (nothing left to drop once committed)
        return desc, digests.diff_id

    def finish(self) -> None:
        """Wait for the work put_layer(background=True) left (see store/finishing), and
        for the records queued after it; raise its first failure."""
        self.finishing.wait()

    def blobs_for(
        self, layers: Sequence[Descriptor], diff_ids: Sequence[Digest], want: LayerCompression
    ) -> tuple[Descriptor, ...]:
        """An image's layer blobs, each in the compression `want` asks for (converted now
        when the store has no such blob yet): see LayerVariants.blob_for."""
        self.finish()
        return tuple(
            self.variants.blob_for(Layer(blob, diff_id), want)
            for blob, diff_id in zip(layers, diff_ids, strict=True)
        )

    def write_image(self, config: ImageConfig, layers: Sequence[Descriptor]) -> Image:
        """Store the config and the manifest (the layer blobs must be in already)."""
        if len(layers) != len(config.diff_ids):
            raise StoreError(
                f"image has {len(layers)} layers but its config lists {len(config.diff_ids)}"
            )
        self.finish()  # the blobs of a build's last layers may still be on their way in
        for layer in layers:
            if not self.layout.has(layer.digest):
                raise StoreError(f"layer blob {layer.digest} is not in the store")
        layers = [_oci_layer(layer) for layer in layers]
        with writing("the image config and manifest", self.root):
            cfg = self.layout.put_json(config.to_json(), MediaType.OCI_CONFIG)
            manifest = Manifest(cfg, tuple(layers))
            stored = self.layout.put_json(manifest.to_json(), MediaType.OCI_MANIFEST)
        platform = Platform(config.architecture, config.os, config.variant)
        desc = Descriptor(stored.media_type, stored.digest, stored.size, platform=platform)
        return Image(desc, manifest, config)

    def unpacked(self, image: Image) -> tuple[Path, ...]:
        """The image's layers unpacked, bottom first: the lowerdirs of an overlay on it."""
        return tuple(self.layers.get(layer.blob, layer.diff_id) for layer in image.layers)

    def gc(self, *, prune_cache: bool = False, prune_containers: bool = False) -> int:
        """Remove what index.json and cache records do not reach; returns bytes freed.

        StoreError if a build or run holds a lease(). prune_cache drops every cache record
        (and the RUN cache mounts) first; prune_containers drops the writable layers that
        `builder run` without --rm kept.
        """
        from builder.store.gc import collect  # lazily: only prune needs it

        with self._gc_lock.exclusive(), self._lock.held():
            freed = 0
            if prune_containers:  # no run holds a lease now: none of them is in use
                freed += self.containers.clear()
            if prune_cache:  # the variants are a cache of conversions: they go too
                freed += self.cache_mounts.clear() + self.cache.clear() + self.variants.clear()
            return freed + collect(
                self.layout, self.layers, self.cache, self.variants, self.scratch
            )

    def fsck(self, *, repair: bool = False) -> Report:
        """Check every blob, image, unpacked layer and record (see fsck.py); with `repair`,
        remove what is broken, under gc's exclusive lock (StoreError while a build or run
        holds a lease) and the update lock. The report is what was found (and, with
        `repair`, removed)."""
        from builder.store import fsck  # lazily: only fsck needs it

        if not repair:
            return fsck.check(self)
        with self._gc_lock.exclusive("fsck --repair"), self._lock.held():
            found = fsck.check(self)
            fsck.repair(self, found)
            return found
