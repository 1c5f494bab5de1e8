"""The local store: an OCI image layout in `root/layout`, plus our own dirs beside it.

root/layout/{oci-layout,index.json,blobs/sha256/<hex>}   the OCI image layout
root/layers/<diff_id hex>/   unpacked layers in overlay form (lowerdirs)
root/cache/<key>.json        build cache records
root/tmp/                    scratch on the same filesystem, for atomic renames
root/lock                    flock: index.json updates and layer-dir renames
root/gc.lock                 flock: shared by leases (builds), exclusive by gc

The layout has a directory of its own because OCI tools walk and open every file under a
layout's root: an unpacked layer's whiteouts (char devices), fifos and absolute symlinks
(dangling on the host) would break or hang them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from builder.errors import ImageNotFound, StoreError, UsageError
from builder.image.canonical import canonical_json
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.manifest import Index, Manifest
from builder.image.mediatypes import Compression, MediaType
from builder.image.reference import Reference
from builder.store.atomic import fsync_dir, write_atomic
from builder.store.blobs import BlobWriter, open_verified

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = {"imageLayoutVersion": "1.0.0"}
_CACHE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$")
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = root / "layout"
        self.blobs = self.layout / "blobs" / "sha256"
        self.layers = root / "layers"
        self.cache = root / "cache"
        self.tmp = root / "tmp"
        # Per-instance (not global) so nested lock() calls in one process do not deadlock.
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock_fd = -1

    @classmethod
    def open(cls, root: Path) -> Store:
        """Open the store at `root`, creating an empty layout if there is none."""
        root = Path(root)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not (root / "layout" / "oci-layout").exists():
                stray = [p.name for p in root.iterdir() if p.name not in ("lock", "tmp", "layout")]
                if stray:
                    raise StoreError(f"{root} is not an image store (no oci-layout file)")
            store = cls(root)
            for d in (store.blobs, store.layers, store.cache, store.tmp):
                d.mkdir(parents=True, exist_ok=True)
            if not (store.layout / "index.json").exists():
                with store.lock():
                    if not (store.layout / "index.json").exists():
                        store._write_index(Index(()))
                        layout_file = store.layout / "oci-layout"
                        write_atomic(layout_file, canonical_json(_LAYOUT), store.tmp)
        except OSError as err:
            raise StoreError(f"cannot open store {root}: {err.strerror or err}") from None
        return store

    # -- locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive flock on root/lock; re-entrant within this Store object."""
        with self._mutex:
            if self._depth == 0:
                fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = -1

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold while building: gc() refuses to run while any lease is held, so blobs written
        but not yet tagged are not swept from under a build."""
        fd = os.open(self.root / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- blobs ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def blob_writer(self) -> Iterator[BlobWriter]:
        fd, tmp = tempfile.mkstemp(prefix=f"blob-{os.getpid()}-", dir=self.tmp)
        os.close(fd)
        os.unlink(tmp)  # BlobWriter opens it exclusively itself
        writer = BlobWriter(Path(tmp), self.blobs)
        try:
            yield writer
        finally:
            writer.abort()  # no-op after commit (the temp file is gone by then)

    def put_bytes(self, data: bytes, media_type: MediaType | str) -> Descriptor:
        with self.blob_writer() as w:
            w.write(data)
            return w.commit(media_type)

    def put_json(self, value: Mapping[str, Any], media_type: MediaType | str) -> Descriptor:
        return self.put_bytes(canonical_json(value), media_type)

    def blob_path(self, digest: Digest) -> Path:
        if digest.algorithm != "sha256":
            raise StoreError(f"the store holds sha256 blobs only, not {digest}")
        return self.blobs / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A stream of the blob; reading to the end raises StoreError if it is corrupt."""
        return open_verified(self.blob_path(digest), digest)

    def read_blob(self, digest: Digest) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def _read_json(self, digest: Digest) -> Any:
        try:
            return json.loads(self.read_blob(digest))
        except ValueError as err:
            raise StoreError(f"blob {digest} is not valid JSON: {err}") from None

    # -- layers and images ---------------------------------------------------------------

    def put_layer(
        self,
        src_dir: Path,
        compression: Compression = Compression.ZSTD,
        *,
        mtime_clamp: int | None = None,
    ) -> tuple[Descriptor, Digest]:
        """Write `src_dir` as a layer blob, streamed; returns (layer descriptor, diff_id).

        `mtime_clamp` (SOURCE_DATE_EPOCH) caps every mtime in the blob; `src_dir` is not
        changed, so an adopted layer dir keeps its real times.
        """
        from builder.layer.write import write_layer  # lazily: the CLI starts without it

        with self.blob_writer() as w:
            digests = write_layer(src_dir, w, compression, mtime_clamp=mtime_clamp)
            desc = w.commit(digests.media_type)
        return desc, digests.diff_id

    def write_image(self, config: ImageConfig, layers: Sequence[Descriptor]) -> Descriptor:
        """Store the config and the manifest; returns the manifest's descriptor."""
        if len(layers) != len(config.diff_ids):
            raise StoreError(
                f"image has {len(layers)} layers but its config lists {len(config.diff_ids)}"
            )
        for layer in layers:
            if not self.has_blob(layer.digest):
                raise StoreError(f"layer blob {layer.digest} is not in the store")
        cfg = self.put_json(config.to_json(), MediaType.OCI_CONFIG)
        manifest = self.put_json(Manifest(cfg, tuple(layers)).to_json(), MediaType.OCI_MANIFEST)
        platform = Platform(config.architecture, config.os, config.variant)
        return Descriptor(manifest.media_type, manifest.digest, manifest.size, platform=platform)

    def manifest(self, desc: Descriptor) -> Manifest:
        try:
            return Manifest.from_json(self._read_json(desc.digest))
        except FormatError as err:
            raise StoreError(f"manifest {desc.digest}: {err}") from None

    def config(self, manifest: Manifest) -> ImageConfig:
        try:
            return ImageConfig.from_json(self._read_json(manifest.config.digest))
        except FormatError as err:
            raise StoreError(f"config {manifest.config.digest}: {err}") from None

    def layer_dir(self, layer: Descriptor, diff_id: Digest) -> Path:
        """layers/<diff_id hex>, unpacked from the blob on first use (verified both ways)."""
        target = self.layers / diff_id.hex
        if target.is_dir():
            return target
        from builder.layer.apply import unpack_layer  # lazily: tarfile is slow to import

        staging = self.tmp_dir("unpack")
        try:
            with self.open_blob(layer.digest) as blob:
                unpack_layer(blob, staging / "root", expected_diff_id=diff_id)
                blob.read()  # to EOF, so the blob digest is verified too
            return self.adopt_layer_dir(diff_id, staging / "root")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def adopt_layer_dir(self, diff_id: Digest, src: Path) -> Path:
        """Move an overlay-form dir into layers/ (a rename, no copy); if one is there, drop src."""
        target = self.layers / diff_id.hex
        with self.lock():
            if target.is_dir():
                shutil.rmtree(src, ignore_errors=True)
                return target
            try:
                os.rename(src, target)
            except OSError as err:
                raise StoreError(
                    f"cannot move {src} into the store: {err.strerror} "
                    "(it must be on the store's filesystem)"
                ) from None
            fsync_dir(self.layers)
        return target

    def tmp_dir(self, prefix: str) -> Path:
        """A new private dir under tmp/, named with our pid so gc can tell it is live."""
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=self.tmp))

    # -- refs (index.json) ---------------------------------------------------------------

    def _read_index(self) -> Index:
        try:
            return Index.from_json(json.loads((self.layout / "index.json").read_bytes()))
        except (OSError, ValueError) as err:
            raise StoreError(f"{self.layout}/index.json is unreadable: {err}") from None

    def _write_index(self, index: Index) -> None:
        write_atomic(self.layout / "index.json", canonical_json(index.to_json()), self.tmp)

    def tag(self, name: str, manifest: Descriptor) -> None:
        ref = str(Reference.parse(name))
        entry = manifest.with_annotations({**(manifest.annotations or {}), REF_NAME: ref})
        with self.lock():
            index = self._read_index()
            kept = tuple(d for d in index.manifests if _ref_of(d) != ref)
            self._write_index(Index((*kept, entry), index.annotations))

    def untag(self, name: str) -> None:
        ref = str(Reference.parse(name))
        with self.lock():
            index = self._read_index()
            kept = tuple(d for d in index.manifests if _ref_of(d) != ref)
            if len(kept) == len(index.manifests):
                raise ImageNotFound(f"no image named {ref} in the store")
            self._write_index(Index(kept, index.annotations))

    def images(self) -> list[tuple[str, Descriptor]]:
        out = []
        for d in self._read_index().manifests:
            ref = _ref_of(d)
            if ref is not None:
                out.append((ref, d))
        return out

    def resolve(self, name: str) -> Descriptor:
        """By ref name, by manifest digest, or by a unique prefix of the image ID."""
        index = self._read_index().manifests
        if name.startswith("sha256:") and len(name) == 71:
            digest = Digest.parse(name)
            for d in index:
                if d.digest == digest:
                    return d.with_annotations(None)
        with contextlib.suppress(UsageError):
            ref = str(Reference.parse(name))
            for d in index:
                if _ref_of(d) == ref:
                    return d
        match = _HEX_PREFIX.fullmatch(name)
        if match:
            prefix = match.group(1)
            found = {}
            for d in index:
                if d.media_type in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST):
                    config = self.manifest(d).config.digest
                    if config.hex.startswith(prefix):
                        found[config] = d
            if len(found) == 1:
                return next(iter(found.values()))
            if len(found) > 1:
                raise ImageNotFound(f"image ID prefix {name!r} is ambiguous; give more digits")
        raise ImageNotFound(f"no image {name!r} in the store (see `builder images`)")

    # -- build cache ---------------------------------------------------------------------

    def _cache_path(self, key: str) -> Path:
        if not _CACHE_KEY.fullmatch(key):
            raise StoreError(f"invalid cache key {key!r}")
        return self.cache / f"{key}.json"

    def cache_get(self, key: str) -> dict[str, Any] | None:
        try:
            value = json.loads(self._cache_path(key).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged record is a cache miss, not an error
        return value if isinstance(value, dict) else None

    def cache_put(self, key: str, record: Mapping[str, Any]) -> None:
        write_atomic(self._cache_path(key), canonical_json(dict(record)), self.tmp)

    # -- garbage collection ----------------------------------------------------------------

    def gc(self, *, prune_cache: bool = False, prune_containers: bool = False) -> int:
        """Remove what index.json and cache records do not reach; returns bytes freed.

        StoreError if a build or run holds a lease(). prune_cache drops every cache record
        (and the RUN cache mounts) first; prune_containers drops the writable layers that
        `builder run` without --rm kept.
        """
        from builder.store.gc import collect

        return collect(self, prune_cache=prune_cache, prune_containers=prune_containers)


def _ref_of(d: Descriptor) -> str | None:
    return (d.annotations or {}).get(REF_NAME)
