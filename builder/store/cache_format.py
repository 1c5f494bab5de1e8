"""The format of a shared build cache (--cache-to / --cache-from): an OCI artifact.

It is an OCI image manifest, so any registry that stores images stores it (distribution 2.8
included, which checks nothing of a config but that its blob is there):

  manifest   mediaType  application/vnd.oci.image.manifest.v1+json
             artifactType  application/vnd.builder.cache.v1 (OCI 1.1; older registries keep
                           it as an unknown field)
             config     our JSON document, CONFIG_MEDIA_TYPE
             layers     every layer blob a record names, each once, with its own media type
  config     {"records": {RECORD KEY: STEP RECORD}}

A record key is the key the step's result has in the local cache (the chained cache key of
engine/cachekey.py, with the SOURCE_DATE_EPOCH rule of engine/steps/layer_step.py), and a
step record is the store's StepRecord as the local cache writes it: so a record read from a
shared cache is used exactly as a local one, and a blob moves only when something needs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from builder.image.canonical import canonical_json
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.mediatypes import MediaType
from builder.record import dataclass
from builder.store.cache import StepRecord

CONFIG_MEDIA_TYPE = "application/vnd.builder.cache.config.v1+json"
ARTIFACT_TYPE = "application/vnd.builder.cache.v1"
MAX_DOCUMENT = 64 << 20  # a cache of many thousand steps is a few MB; refuse what is absurd

# The local cache's key rule (store/cache.py): a key read from elsewhere names a file there.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$")


@dataclass(frozen=True)
class CacheDocument:
    """The records of a shared cache, by record key."""

    records: Mapping[str, StepRecord]

    def layers(self) -> tuple[Descriptor, ...]:
        """Each layer blob the records name, once, in key order (deterministic bytes)."""
        seen: dict[Digest, Descriptor] = {}
        for key in sorted(self.records):
            layer = self.records[key].layer
            if layer is not None and layer.digest not in seen:
                seen[layer.digest] = Descriptor(layer.media_type, layer.digest, layer.size)
        return tuple(seen.values())

    def config_bytes(self) -> bytes:
        records = {key: self.records[key].to_json() for key in sorted(self.records)}
        return canonical_json({"records": records})

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheDocument:
        """The document, or FormatError saying what is wrong with it."""
        try:
            value = json.loads(data)
        except ValueError as err:
            raise FormatError(f"the cache config is not JSON: {err}") from None
        if not isinstance(value, dict) or not isinstance(value.get("records"), dict):
            raise FormatError("the cache config has no 'records' object")
        records: dict[str, StepRecord] = {}
        for key, record in value["records"].items():
            if not _KEY.fullmatch(key):
                raise FormatError(f"the cache config has an invalid record key {key!r}")
            try:
                records[key] = StepRecord.from_json(record)
            except ValueError as err:  # FormatError and DigestError are ValueErrors
                raise FormatError(f"the cache config's record {key}: {err}") from None
        return cls(records)


def manifest_bytes(config: Descriptor, layers: tuple[Descriptor, ...]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_MANIFEST),
            "artifactType": ARTIFACT_TYPE,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
    )


@dataclass(frozen=True)
class CacheManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheManifest:
        """The manifest of a shared cache, or FormatError (an image, an index, junk)."""
        try:
            value: Any = json.loads(data)
        except ValueError as err:
            raise FormatError(f"the cache manifest is not JSON: {err}") from None
        if not isinstance(value, dict) or value.get("schemaVersion") != 2:
            raise FormatError("the cache manifest is not an OCI manifest")
        if value.get("mediaType", str(MediaType.OCI_MANIFEST)) != str(MediaType.OCI_MANIFEST):
            raise FormatError(f"the cache manifest's mediaType is {value.get('mediaType')!r}")
        config = Descriptor.from_json(value.get("config"))
        if config.media_type != CONFIG_MEDIA_TYPE:
            raise FormatError(
                f"it is not a builder cache (its config is {config.media_type}, not"
                f" {CONFIG_MEDIA_TYPE})"
            )
        if config.size > MAX_DOCUMENT:
            raise FormatError(f"the cache config is {config.size} bytes: too large")
        layers = value.get("layers") or []
        if not isinstance(layers, list):
            raise FormatError("the cache manifest's 'layers' is not a list")
        return cls(config, tuple(Descriptor.from_json(d) for d in layers))

    def check(self, document: CacheDocument) -> None:
        """Every blob a record names must be one the manifest lists, as it was listed:
        a record naming any other could not be fetched from where the cache lives."""
        listed = {layer.digest: layer for layer in self.layers}
        for key, record in document.records.items():
            layer = record.layer
            if layer is None:
                continue
            known = listed.get(layer.digest)
            if known is None or known.size != layer.size:
                raise FormatError(f"record {key} names blob {layer.digest}, which is not listed")
