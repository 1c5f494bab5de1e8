"""Descriptors: (media type, digest, size) pointers to blobs, plus platform and annotations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.image import fields
from builder.image.digest import Digest, DigestError
from builder.image.mediatypes import MediaType, media_type


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    @classmethod
    def from_json(cls, value: Any) -> Platform:
        m = fields.obj(value, "platform")
        return cls(
            architecture=fields.req_str(m, "architecture", "platform"),
            os=fields.req_str(m, "os", "platform"),
            variant=fields.opt_str(m, "variant", "platform"),
            os_version=fields.opt_str(m, "os.version", "platform"),
            os_features=fields.opt_strs(m, "os.features", "platform") or (),
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def host(cls, machine: str | None = None) -> Platform:
        """This machine in OCI/Go terms (x86_64 -> amd64, aarch64 -> arm64, ...)."""
        import platform

        machine = machine or platform.machine()
        arch, variant = _GOARCH.get(machine, (machine, None))
        return cls(architecture=arch, os="linux", variant=variant)


_GOARCH: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


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
