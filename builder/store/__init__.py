"""The local content store (an OCI image layout plus unpacked layers and a build cache)."""

from builder.store.blobs import BlobStore, BlobWriter
from builder.store.cache import JsonRecord, StepRecord
from builder.store.store import Store

__all__ = ["BlobStore", "BlobWriter", "JsonRecord", "StepRecord", "Store"]
