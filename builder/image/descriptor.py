"""Descriptors: (media type, digest, size) pointers to blobs, plus platform and annotations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder.image import fields
from builder.image.digest import Digest, DigestError
from builder.image.mediatypes import MediaType, media_type
from builder.image.platform import Platform
from builder.record import dataclass

__all__ = ["Descriptor", "Platform"]


@dataclass(frozen=True)
class Descriptor:
    media_type: MediaType | str
    digest: Digest
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Platform | None = None

    # Annotations are a mapping (unhashable); identity of a descriptor is what it points at.
    def __hash__(self) -> int:
        return hash((str(self.media_type), self.digest, self.size))

    def with_annotations(self, annotations: Mapping[str, str] | None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, annotations, self.platform)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": str(self.media_type),
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @classmethod
    def from_json(cls, value: Any) -> Descriptor:
        m = fields.obj(value, "descriptor")
        size = fields.opt_int(m, "size", "descriptor")
        if size is None or size < 0:
            raise fields.FormatError("descriptor: missing or negative 'size'")
        try:
            digest = Digest(fields.req_str(m, "digest", "descriptor"))
        except DigestError as err:
            raise fields.FormatError(f"descriptor: {err}") from None
        platform = m.get("platform")
        return cls(
            media_type=media_type(fields.req_str(m, "mediaType", "descriptor")),
            digest=digest,
            size=size,
            annotations=fields.opt_str_map(m, "annotations", "descriptor"),
            platform=None if platform is None else Platform.from_json(platform),
        )
