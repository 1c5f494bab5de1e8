"""A shared build cache read from and written to a CacheTransport (a directory, a registry).

`CacheImport` and `CacheExport` are what the CLI hands the engine for --cache-from and
--cache-to (they fit engine/remote_cache.py's CacheSource and CacheTarget). Opening an
import reads the manifest and the records, never a layer: the engine asks for a layer's blob
only when it needs its bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.mediatypes import MediaType
from builder.record import dataclass
from builder.store.cache import StepRecord
from builder.store.cache_format import (
    CONFIG_MEDIA_TYPE,
    CacheDocument,
    CacheManifest,
    manifest_bytes,
)
from builder.store.cache_transport import CacheTransport
from builder.store.store import Store

PARALLEL = 3  # blobs moving at once


class OpenedCache:
    """An imported cache's records, and its blobs fetched into the store on demand."""

    def __init__(self, store: Store, transport: CacheTransport, document: CacheDocument) -> None:
        self._store = store
        self._transport = transport
        self._records = document.records

    def record(self, key: str) -> StepRecord | None:
        return self._records.get(key)

    def fetch(self, layer: Descriptor) -> None:
        self._transport.get_blob(layer, self._store.layout)


@dataclass(frozen=True)
class CacheImport:
    transport: CacheTransport
    tag: str = "latest"

    @property
    def where(self) -> str:
        return f"{self.transport.where} ({self.tag})"

    def open(self, store: Store) -> OpenedCache:
        """The cache's records; ImageNotFound when there is none, StoreError (or the
        transport's RegistryError) when it cannot be read or is not a builder cache."""
        data = self.transport.get_manifest(self.tag)
        try:
            manifest = CacheManifest.from_bytes(data)
            # The config is small (the manifest bounds its size) and is read verified.
            self.transport.get_blob(manifest.config, store.layout)
            document = CacheDocument.from_bytes(store.layout.read(manifest.config.digest))
            manifest.check(document)
        except ValueError as err:  # FormatError, DigestError
            raise StoreError(str(err)) from None
        return OpenedCache(store, self.transport, document)


@dataclass(frozen=True)
class CacheExport:
    transport: CacheTransport
    tag: str = "latest"
    mode: str = "min"

    @property
    def where(self) -> str:
        return f"{self.transport.where} ({self.tag})"

    def export(
        self,
        store: Store,
        records: Mapping[str, StepRecord],
        fetch: Callable[[Descriptor], None],
    ) -> None:
        """Blobs first, then the config, the manifest last: the cache's name never points
        at an incomplete cache. A blob the destination has already is not sent again."""
        document = CacheDocument(records)
        layers = document.layers()

        def send(layer: Descriptor) -> None:
            if self.transport.has_blob(layer):
                return
            fetch(layer)  # a record imported from elsewhere: its blob is not here yet
            self.transport.put_blob(layer, store.layout)

        # Up to three blobs at once, as a push moves an image's layers.
        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="cache-export") as pool:
            futures = [pool.submit(send, layer) for layer in layers]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        config = store.layout.put(document.config_bytes(), CONFIG_MEDIA_TYPE)
        self.transport.put_blob(config, store.layout)
        self.transport.put_manifest(
            self.tag, manifest_bytes(config, layers), str(MediaType.OCI_MANIFEST)
        )
