"""A shared build cache in a registry repository (--cache-to/--cache-from type=registry).

The CacheTransport of store/cache_transport.py over the distribution client: the cache's
manifest is put and got by tag like an image's, its blobs go through the same verified
download and the same upload (HEAD first, so a blob the repository has is not sent again).

It is written against the calls it uses of a repository (`CacheRepository`), so it does
not depend on how the client is put together; cli/cache.py builds one from the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from builder.errors import ImageNotFound
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.registry.events import (
    BlobDone,
    BlobProgress,
    BlobStarted,
    TransferDone,
    TransferReporter,
    TransferStarted,
    ignore,
    serialized,
)
from builder.store.blobs import BlobStore
from builder.store.cache_format import CONFIG_MEDIA_TYPE as CACHE_CONFIG


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


# Send one blob from the store to the repository, reporting bytes sent; says how it went
# ("pushed", "exists", "mounted").
Upload = Callable[[Descriptor, BlobStore, Callable[[int], None]], str]


def _quiet(_done: int) -> None:
    """Progress of a cache blob fetched: not shown (the build's steps say what it is for)."""


class RegistryCacheTransport:
    """An export shows as a push does: a line (or a bar) per blob sent, then the manifest."""

    def __init__(
        self,
        repo: CacheRepository,
        upload: Upload,
        report: TransferReporter = ignore,
        tag: str = "latest",  # the tag an export writes, for its progress
    ) -> None:
        self._repo = repo
        self._tag = tag
        self._upload = upload
        self._report = serialized(report)
        self._lock = threading.Lock()
        self._started: float | None = None

    @property
    def where(self) -> str:
        return self._repo.where

    def get_manifest(self, tag: str) -> bytes:
        try:
            return self._repo.manifest(tag).data
        except ImageNotFound:
            raise ImageNotFound(f"no cache {self._repo.where}:{tag} in the registry") from None

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> None:
        started = self._start()
        digest = self._repo.put_manifest(tag, data, media_type)
        name = f"{self._repo.where}:{tag}"
        self._report(TransferDone("push", name, str(digest), time.monotonic() - started))

    def _start(self) -> float:
        """The export's first upload announces it."""
        with self._lock:
            if self._started is None:
                self._started = time.monotonic()
                where = self._repo.where
                name = f"{where}:{self._tag} (cache)"
                self._report(TransferStarted("push", name, where.partition("/")[0]))
            return self._started

    def has_blob(self, blob: Descriptor) -> bool:
        return self._repo.blob_size(blob.digest) is not None

    def get_blob(self, blob: Descriptor, into: BlobStore) -> None:
        self._repo.download(blob, into, _quiet)

    def put_blob(self, blob: Descriptor, source: BlobStore) -> None:
        self._start()
        t0 = time.monotonic()
        kind = "config" if blob.media_type == CACHE_CONFIG else "layer"
        self._report(BlobStarted("push", str(blob.digest), blob.size, kind))

        def progress(done: int) -> None:
            self._report(BlobProgress(str(blob.digest), done, blob.size))

        how = self._upload(blob, source, progress)
        seconds = time.monotonic() - t0
        self._report(BlobDone("push", str(blob.digest), blob.size, kind, how, seconds))
