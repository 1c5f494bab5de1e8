"""A shared build cache in a registry repository (--cache-to/--cache-from type=registry).

The CacheTransport of store/cache_transport.py over the distribution client: the cache's
manifest is put and got by tag like an image's, its blobs go through the same verified
download and the same upload (HEAD first, so a blob the repository has is not sent again).

It is written against the calls it uses of a repository (`CacheRepository`), so it does
not depend on how the client is put together; cli/cache.py builds one from the client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from builder.errors import ImageNotFound
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.store.blobs import BlobStore


class Manifest(Protocol):
    """A manifest as the registry served it (verified against its digest)."""

    @property
    def data(self) -> bytes: ...


class CacheRepository(Protocol):
    """What the cache needs of a repository of the distribution client."""

    @property
    def where(self) -> str: ...

    def manifest(self, reference: str) -> Manifest:
        """ImageNotFound for a 404, RegistryError for any other failure."""
        ...

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> Digest: ...

    def blob_size(self, digest: Digest) -> int | None: ...

    def download(
        self, blob: Descriptor, store: BlobStore, progress: Callable[[int], None]
    ) -> None: ...


# Send one blob from the store to the repository (skipping one the repository has).
Upload = Callable[[Descriptor, BlobStore], None]


def _quiet(_done: int) -> None:
    """Progress of a cache blob: not shown (the build's own events say what runs)."""


class RegistryCacheTransport:
    def __init__(self, repo: CacheRepository, upload: Upload) -> None:
        self._repo = repo
        self._upload = upload

    @property
    def where(self) -> str:
        return self._repo.where

    def get_manifest(self, tag: str) -> bytes:
        try:
            return self._repo.manifest(tag).data
        except ImageNotFound:
            raise ImageNotFound(f"no cache {self._repo.where}:{tag} in the registry") from None

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> None:
        self._repo.put_manifest(tag, data, media_type)

    def has_blob(self, blob: Descriptor) -> bool:
        return self._repo.blob_size(blob.digest) is not None

    def get_blob(self, blob: Descriptor, into: BlobStore) -> None:
        self._repo.download(blob, into, _quiet)

    def put_blob(self, blob: Descriptor, source: BlobStore) -> None:
        self._upload(blob, source)
