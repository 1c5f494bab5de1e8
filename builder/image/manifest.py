"""Image manifests and indexes (OCI, and Docker schema 2 on the way in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder.image import fields
from builder.image.descriptor import Descriptor
from builder.image.mediatypes import MediaType, media_type
from builder.record import dataclass


def _schema_version(m: Mapping[str, Any], what: str) -> None:
    if m.get("schemaVersion") != 2:
        raise fields.FormatError(f"{what}: unsupported schemaVersion {m.get('schemaVersion')!r}")


def _descriptors(m: Mapping[str, Any], key: str, what: str) -> tuple[Descriptor, ...]:
    value = m.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fields.FormatError(f"{what}: {key!r} must be a list")
    return tuple(Descriptor.from_json(v) for v in value)


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    media_type: MediaType | str = MediaType.OCI_MANIFEST

    def __hash__(self) -> int:
        return hash((self.config, self.layers))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": str(self.media_type),
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        m = fields.obj(value, "manifest")
        _schema_version(m, "manifest")
        mt = media_type(fields.opt_str(m, "mediaType", "manifest") or MediaType.OCI_MANIFEST)
        if isinstance(mt, MediaType) and not mt.is_manifest:
            raise fields.FormatError(f"manifest: mediaType {mt.value} is not an image manifest")
        if "config" not in m:
            raise fields.FormatError("manifest: missing 'config'")
        return cls(
            config=Descriptor.from_json(m["config"]),
            layers=_descriptors(m, "layers", "manifest"),
            annotations=fields.opt_str_map(m, "annotations", "manifest"),
            media_type=mt,
        )


@dataclass(frozen=True)
class Index:
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    media_type: MediaType | str = MediaType.OCI_INDEX

    def __hash__(self) -> int:
        return hash(self.manifests)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": str(self.media_type),
            "manifests": [d.to_json() for d in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, value: Any) -> Index:
        m = fields.obj(value, "index")
        _schema_version(m, "index")
        mt = media_type(fields.opt_str(m, "mediaType", "index") or MediaType.OCI_INDEX)
        if isinstance(mt, MediaType) and not mt.is_index:
            raise fields.FormatError(f"index: mediaType {mt.value} is not an image index")
        return cls(
            manifests=_descriptors(m, "manifests", "index"),
            annotations=fields.opt_str_map(m, "annotations", "index"),
            media_type=mt,
        )
