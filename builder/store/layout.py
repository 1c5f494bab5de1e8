"""root/layout: the OCI image layout. Blobs by digest, and index.json naming the images.

This is the part of the store other tools read (oci-image-tool, umoci, skopeo's `oci:`), and
the one pull and push will read and write: nothing here knows of builds or unpacked layers.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from builder.errors import ImageNotFound, StoreError, UsageError
from builder.image.canonical import canonical_json
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest, DigestError
from builder.image.fields import FormatError
from builder.image.image import Image
from builder.image.manifest import Index, Manifest
from builder.image.mediatypes import MediaType
from builder.image.reference import Reference
from builder.store.atomic import write_atomic
from builder.store.blobs import BlobWriter, open_verified
from builder.store.locks import UpdateLock
from builder.store.paths import StorePaths
from builder.store.scratch import Scratch

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")


def ref_of(d: Descriptor) -> str | None:
    """The name index.json gives a manifest, if any."""
    return (d.annotations or {}).get(REF_NAME)


class OciLayout:
    """The layout's blobs (a BlobStore) and its index (the image names)."""

    def __init__(self, paths: StorePaths, lock: UpdateLock, scratch: Scratch) -> None:
        self._paths = paths
        self._lock = lock
        self._scratch = scratch

    def create(self) -> None:
        """Write an empty index and the oci-layout file, unless they are there."""
        if self._paths.index.exists():
            return
        with self._lock.held():
            if not self._paths.index.exists():
                self.put_index(Index(()))
                write_atomic(
                    self._paths.oci_layout_file, canonical_json(LAYOUT_VERSION), self._paths.tmp
                )

    # -- blobs (the BlobStore protocol) ----------------------------------------------------

    def _path(self, digest: Digest) -> Path:
        if digest.algorithm != "sha256":
            raise StoreError(f"the store holds sha256 blobs only, not {digest}")
        return self._paths.blob(digest)

    @contextlib.contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        writer = BlobWriter(self._scratch.new_name("blob"), self._paths.blobs)
        try:
            yield writer
        finally:
            writer.abort()  # no-op after commit (the temp file is gone by then)

    def put(self, data: bytes, media_type: MediaType | str) -> Descriptor:
        digest = Digest.of_bytes(data)
        path = self._path(digest)
        # These very bytes already there need no write: a cached build puts its config and
        # manifest again, and the fsyncs of rewriting them were most of its disk time. A
        # copy that differs (a flipped byte) is still replaced: writing a blob heals it.
        with contextlib.suppress(OSError):
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return Descriptor(media_type, digest, len(data))
        with self.writer() as w:
            w.write(data)
            return w.commit(media_type)

    def put_json(self, value: Mapping[str, Any], media_type: MediaType | str) -> Descriptor:
        return self.put(canonical_json(value), media_type)

    def open(self, digest: Digest) -> BinaryIO:
        """A stream of the blob; reading to the end raises StoreError if it is corrupt."""
        return open_verified(self._path(digest), digest)

    def read(self, digest: Digest) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def stat(self, digest: Digest) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, digest: Digest) -> bool:
        return self.stat(digest) is not None

    def delete(self, digest: Digest) -> int:
        size = self.stat(digest)
        if size is None:
            return 0
        self._path(digest).unlink(missing_ok=True)
        return size

    def digests(self) -> Iterator[Digest]:
        for path in self._paths.blobs.iterdir():
            with contextlib.suppress(DigestError):  # a stray name is no blob of ours
                yield Digest.from_hex(path.name)

    # -- documents ---------------------------------------------------------------------------

    def _read_json(self, digest: Digest) -> Any:
        try:
            return json.loads(self.read(digest))
        except ValueError as err:
            raise StoreError(f"blob {digest} is not valid JSON: {err}") from None

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

    def image(self, desc: Descriptor) -> Image:
        """The manifest -> config -> layers walk, the one place it is written."""
        manifest = self.manifest(desc)
        try:
            return Image(desc, manifest, self.config(manifest))
        except FormatError as err:
            raise StoreError(str(err)) from None

    # -- the index: image names ------------------------------------------------------------

    def index(self) -> Index:
        try:
            return Index.from_json(json.loads(self._paths.index.read_bytes()))
        except (OSError, ValueError) as err:
            raise StoreError(f"{self._paths.index} is unreadable: {err}") from None

    def put_index(self, index: Index) -> None:
        with self._lock.held():
            write_atomic(self._paths.index, canonical_json(index.to_json()), self._paths.tmp)

    def tag(self, name: str, manifest: Descriptor) -> None:
        ref = str(Reference.parse(name))
        entry = manifest.with_annotations({**(manifest.annotations or {}), REF_NAME: ref})
        with self._lock.held():
            index = self.index()
            if [d for d in index.manifests if ref_of(d) == ref] == [entry]:
                return  # a cached rebuild's tag, already there (among others): no write, no fsync
            kept = tuple(d for d in index.manifests if ref_of(d) != ref)
            tagged = Index((*kept, entry), index.annotations)
            if tagged != index:
                self.put_index(tagged)

    def keep(self, manifest: Descriptor) -> None:
        """List an image in the index without a name (as `docker load` keeps an untagged
        one): gc keeps it, and its digest names it. Nothing if the index lists it already."""
        entry = manifest.with_annotations(None)
        with self._lock.held():
            index = self.index()
            if all(d.digest != entry.digest for d in index.manifests):
                self.put_index(Index((*index.manifests, entry), index.annotations))

    def untag(self, name: str) -> None:
        ref = str(Reference.parse(name))
        with self._lock.held():
            index = self.index()
            kept = tuple(d for d in index.manifests if ref_of(d) != ref)
            if len(kept) == len(index.manifests):
                raise ImageNotFound(f"no image named {ref} in the store")
            self.put_index(Index(kept, index.annotations))

    def forget(self, digest: Digest) -> None:
        """Drop every index entry of the manifest DIGEST: its names, or its unnamed entry."""
        with self._lock.held():
            index = self.index()
            kept = tuple(d for d in index.manifests if d.digest != digest)
            if len(kept) == len(index.manifests):
                raise ImageNotFound(f"no image {digest} in the store")
            self.put_index(Index(kept, index.annotations))

    def refs(self) -> list[tuple[str, Descriptor]]:
        """(name, manifest descriptor) for every named image, in index order."""
        out = []
        for d in self.index().manifests:
            ref = ref_of(d)
            if ref is not None:
                out.append((ref, d))
        return out

    def resolve(self, name: str) -> Descriptor:
        """By ref name, by manifest digest, or by a unique prefix of the image ID."""
        index = self.index().manifests
        if name.startswith("sha256:") and len(name) == 71:
            digest = Digest.parse(name)
            for d in index:
                if d.digest == digest:
                    return d.with_annotations(None)
        with contextlib.suppress(UsageError):
            ref = str(Reference.parse(name))
            for d in index:
                if ref_of(d) == ref:
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
