"""Garbage collection: mark from index.json and the cache's step records, sweep blobs and
unpacked layers nothing marks, and the scratch that dead processes left. A layer's variant
records (its blob in other compressions) live as long as the layer is reached; their blobs
with them.

It knows the store only through its parts' public methods; Store.gc() takes the locks and
hands them in.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from builder.errors import StoreError
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.store.cache import BuildCache, StepRecord
from builder.store.layers import UnpackedLayers
from builder.store.layout import OciLayout
from builder.store.scratch import Scratch
from builder.store.variants import LayerVariants

_DOCUMENTS = (
    MediaType.OCI_MANIFEST,
    MediaType.DOCKER_MANIFEST,
    MediaType.OCI_INDEX,
    MediaType.DOCKER_MANIFEST_LIST,
)


class _Marker:
    def __init__(self, layout: OciLayout) -> None:
        self.layout = layout
        self.blobs: set[Digest] = set()
        self.layers: set[Digest] = set()

    def descriptor(self, media_type: str, digest: Digest) -> None:
        if digest.algorithm != "sha256" or digest in self.blobs:
            return
        self.blobs.add(digest)
        if media_type not in _DOCUMENTS or not self.layout.has(digest):
            return
        try:
            doc = json.loads(self.layout.read(digest))
        except (ValueError, StoreError):
            return  # a corrupt document keeps itself, nothing more; fsck reports it
        if not isinstance(doc, dict):
            return
        children = list(doc.get("manifests") or []) + list(doc.get("layers") or [])
        if isinstance(doc.get("config"), dict):
            children.append(doc["config"])
            self._config(doc["config"])
        # Untyped on purpose: a half-broken document still keeps every child it names.
        for child in children:
            with contextlib.suppress(Exception):
                self.descriptor(str(child["mediaType"]), Digest(child["digest"]))

    def _config(self, desc: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            doc = json.loads(self.layout.read(Digest(desc["digest"])))
            for diff_id in doc["rootfs"]["diff_ids"]:
                self.layers.add(Digest(diff_id))

    def step(self, record: StepRecord) -> None:
        if record.layer is not None and record.diff_id is not None:
            self.blobs.add(record.layer.digest)
            self.layers.add(record.diff_id)


def collect(
    layout: OciLayout,
    layers: UnpackedLayers,
    cache: BuildCache,
    variants: LayerVariants,
    scratch: Scratch,
) -> int:
    """Sweep what nothing reaches; returns the bytes freed. The caller holds gc's exclusive
    lock and the update lock, so no build is writing and no index update is half done."""
    mark = _Marker(layout)
    for d in layout.index().manifests:
        mark.descriptor(str(d.media_type), d.digest)
    for key in cache.stored_keys():
        record = cache.get(key, StepRecord)
        if record is not None:
            mark.step(record)
    freed = 0
    for diff_id in list(variants.diff_ids()):
        if diff_id in mark.layers:
            mark.blobs.update(v.layer.digest for v in variants.of(diff_id))
        else:
            freed += variants.delete(diff_id)
    for digest in list(layout.digests()):
        if digest not in mark.blobs:
            freed += layout.delete(digest)
    for diff_id in list(layers.diff_ids()):
        if diff_id not in mark.layers:
            freed += layers.delete(diff_id)
    return freed + scratch.sweep()
