"""The local content store (an OCI image layout plus unpacked layers and a build cache)."""

from builder.store.blobs import BlobWriter
from builder.store.store import Store

__all__ = ["BlobWriter", "Store"]
