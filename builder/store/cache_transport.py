"""Where a shared build cache lives: the protocol a cache needs of a place (one repository of
a registry, or a directory), and the directory: an OCI image layout, as BuildKit's local
cache is one.

The directory is written so that a reader never sees a cache half-written: each blob is
written to a temp file and renamed in, and index.json, the only name a reader starts from,
is replaced last, atomically. Blobs an older index named are kept: a reader that read the
old index may still be fetching them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from builder.errors import ImageNotFound, StoreError
from builder.image.canonical import canonical_json
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.store.atomic import fsync_dir, write_atomic
from builder.store.blobs import BlobStore
from builder.store.paths import LayoutPaths

REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20
_LAYOUT = {"imageLayoutVersion": "1.0.0"}


class CacheTransport(Protocol):
    """One place a cache is kept: manifests by tag, blobs by digest."""

    @property
    def where(self) -> str: ...

    def get_manifest(self, tag: str) -> bytes:
        """The manifest's bytes; ImageNotFound when there is none under `tag`."""
        ...

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> None: ...

    def has_blob(self, blob: Descriptor) -> bool: ...

    def get_blob(self, blob: Descriptor, into: BlobStore) -> None:
        """Copy the blob into `into`, committed only whole and matching its digest and
        size; else a BuilderError and nothing written."""
        ...

    def put_blob(self, blob: Descriptor, source: BlobStore) -> None:
        """Copy the blob from `source` (read verified)."""
        ...


class LocalCacheDir:
    """type=local: an OCI image layout directory (dest= to write, src= to read)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths = LayoutPaths(root)

    @property
    def where(self) -> str:
        return str(self.root)

    def _blob(self, digest: Digest) -> Path:
        return self._paths.blob(digest)

    # -- reading ---------------------------------------------------------------------------

    def get_manifest(self, tag: str) -> bytes:
        try:
            index = json.loads(self._paths.index.read_bytes())
        except FileNotFoundError:
            raise ImageNotFound(f"{self.root} holds no cache (no index.json)") from None
        except (OSError, ValueError) as err:
            raise StoreError(f"{self.root}/index.json is unreadable: {err}") from None
        manifests = index.get("manifests") if isinstance(index, dict) else None
        for entry in manifests if isinstance(manifests, list) else ():
            if not isinstance(entry, dict):
                continue
            annotations = entry.get("annotations") or {}
            if isinstance(annotations, dict) and annotations.get(REF_NAME) == tag:
                try:
                    desc = Descriptor.from_json(entry)
                except ValueError as err:  # FormatError, DigestError
                    raise StoreError(f"{self.root}/index.json: {err}") from None
                return self._read_document(desc)
        raise ImageNotFound(f"{self.root} has no cache tagged {tag!r}")

    def _read_document(self, desc: Descriptor) -> bytes:
        try:
            with open(self._blob(desc.digest), "rb") as f:
                data = f.read(desc.size + 1)
        except OSError as err:
            raise StoreError(f"{self.root}: blob {desc.digest}: {err.strerror}") from None
        if len(data) != desc.size or Digest.of_bytes(data, desc.digest.algorithm) != desc.digest:
            raise StoreError(f"{self.root}: blob {desc.digest} does not match its digest")
        return data

    def has_blob(self, blob: Descriptor) -> bool:
        try:
            return self._blob(blob.digest).stat().st_size == blob.size
        except FileNotFoundError:
            return False

    def get_blob(self, blob: Descriptor, into: BlobStore) -> None:
        try:
            source = open(self._blob(blob.digest), "rb")  # noqa: SIM115  # closed below
        except OSError as err:
            raise StoreError(f"{self.root}: blob {blob.digest}: {err.strerror}") from None
        with source, into.writer() as writer:
            while chunk := source.read(_CHUNK):
                writer.write(chunk)
                if writer.size > blob.size:
                    break
            if writer.size != blob.size or writer.digest != blob.digest:
                raise StoreError(
                    f"{self.root}: blob {blob.digest} does not match its digest or size;"
                    " it was not stored"
                )
            writer.commit(blob.media_type)

    # -- writing ---------------------------------------------------------------------------

    def _tmp(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", dir=self.root)
        return fd, Path(name)

    def _prepare(self) -> None:
        try:
            self._paths.blobs.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot write a cache in {self.root}: {err.strerror}") from None
        if not self._paths.oci_layout_file.exists():
            write_atomic(self._paths.oci_layout_file, canonical_json(_LAYOUT), self.root)

    def put_blob(self, blob: Descriptor, source: BlobStore) -> None:
        self._prepare()
        if self.has_blob(blob):
            return
        target = self._blob(blob.digest)
        fd, tmp = self._tmp()
        try:
            with os.fdopen(fd, "wb") as out, source.open(blob.digest) as stream:
                while chunk := stream.read(_CHUNK):  # verified at EOF by the store
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> None:
        """The manifest blob, then index.json naming it under `tag` (other tags kept)."""
        self._prepare()
        digest = Digest.of_bytes(data)
        if not self._blob(digest).exists():
            write_atomic(self._blob(digest), data, self.root)
        entry = Descriptor(media_type, digest, len(data), annotations={REF_NAME: tag}).to_json()
        kept = []
        try:
            old = json.loads(self._paths.index.read_bytes())
            for item in old.get("manifests") or []:
                if (item.get("annotations") or {}).get(REF_NAME) != tag:
                    kept.append(item)
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # no index yet, or one that is not ours to keep: ours replaces it
        index = {
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_INDEX),
            "manifests": [*kept, entry],
        }
        write_atomic(self._paths.index, canonical_json(index), self.root)
