"""Media types of the OCI image spec and of Docker's v2 schema 2, with predicates."""

from __future__ import annotations

from enum import StrEnum


class Compression(StrEnum):
    """How a layer blob is compressed. Lives here (pure) so media types can name it."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class MediaType(StrEnum):
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    @property
    def is_layer(self) -> bool:
        return self in _LAYERS

    @property
    def is_manifest(self) -> bool:
        return self in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)

    @property
    def is_index(self) -> bool:
        return self in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST)

    @property
    def is_config(self) -> bool:
        return self in (MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG)

    def compression(self) -> Compression:
        """The compression of a layer media type; ValueError for a non-layer type."""
        if not self.is_layer:
            raise ValueError(f"{self.value} is not a layer media type")
        if self.value.endswith("+zstd"):
            return Compression.ZSTD
        if self.value.endswith(("+gzip", ".tar.gzip")):
            return Compression.GZIP
        return Compression.NONE

    @classmethod
    def for_layer(cls, compression: Compression) -> MediaType:
        """The OCI layer media type for a compression."""
        return {
            Compression.NONE: cls.OCI_LAYER,
            Compression.GZIP: cls.OCI_LAYER_GZIP,
            Compression.ZSTD: cls.OCI_LAYER_ZSTD,
        }[compression]


_LAYERS = frozenset(
    {
        MediaType.OCI_LAYER,
        MediaType.OCI_LAYER_GZIP,
        MediaType.OCI_LAYER_ZSTD,
        MediaType.OCI_LAYER_NONDIST,
        MediaType.OCI_LAYER_NONDIST_GZIP,
        MediaType.OCI_LAYER_NONDIST_ZSTD,
        MediaType.DOCKER_LAYER,
        MediaType.DOCKER_FOREIGN_LAYER,
    }
)


def media_type(value: str) -> MediaType | str:
    """A known MediaType, or the string itself for types we do not know (kept, not rejected)."""
    try:
        return MediaType(value)
    except ValueError:
        return value
