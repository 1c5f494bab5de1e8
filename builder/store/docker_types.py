"""`--oci-mediatypes=false`: an image under Docker's schema 2 media types, for old registries.

Only the manifest changes: the same config bytes (so the same image ID) under Docker's
config media type, and the same layer blobs under Docker's layer media types. Docker
schema 2 names gzip layers (`...rootfs.diff.tar.gzip`) and uncompressed ones
(`...rootfs.diff.tar`, as containerd and distribution spell it); it has no name for zstd, so
an image holding a zstd layer is refused with what to do, not converted: converting a blob
from one compression to another is the compression code's business (one blob per
compression, keyed by diff_id), and a second converter here would duplicate it. A docker
manifest has no annotations; they are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.errors import UsageError
from builder.image.descriptor import Descriptor
from builder.image.image import Image
from builder.image.manifest import Manifest
from builder.image.mediatypes import Compression, MediaType, media_type

if TYPE_CHECKING:
    from builder.store import Store

DOCKER_LAYER_PLAIN = "application/vnd.docker.image.rootfs.diff.tar"


def _docker_layer(layer: Descriptor, number: int) -> Descriptor:
    kind = media_type(str(layer.media_type))
    if not isinstance(kind, MediaType) or not kind.is_layer:
        if str(kind) == DOCKER_LAYER_PLAIN:
            return layer
        raise UsageError(f"layer {number} has media type {kind}, which Docker's types cannot name")
    if kind in (MediaType.DOCKER_LAYER, MediaType.DOCKER_FOREIGN_LAYER):
        return layer
    compression = kind.compression()
    if compression is Compression.ZSTD:
        raise UsageError(
            f"layer {number} ({layer.digest}) is zstd, and Docker schema 2 has no media type"
            " for zstd: build with --compression gzip (a zstd layer of the base image or from"
            " the build cache must be converted to gzip too) or keep the OCI media types"
        )
    new = DOCKER_LAYER_PLAIN if compression is Compression.NONE else MediaType.DOCKER_LAYER
    return Descriptor(new, layer.digest, layer.size)


def with_docker_media_types(store: Store, image: Image) -> Image:
    """The image under Docker schema 2 media types (a new manifest blob; the config and the
    layers are the same blobs). An image that has them already is returned as it is."""
    if image.manifest.media_type == MediaType.DOCKER_MANIFEST:
        return image
    layers = tuple(_docker_layer(d, n) for n, d in enumerate(image.manifest.layers, 1))
    config = Descriptor(MediaType.DOCKER_CONFIG, image.manifest.config.digest,
                        image.manifest.config.size)  # fmt: skip
    manifest = Manifest(config, layers, media_type=MediaType.DOCKER_MANIFEST)
    stored = store.layout.put_json(manifest.to_json(), MediaType.DOCKER_MANIFEST)
    desc = Descriptor(stored.media_type, stored.digest, stored.size,
                      platform=image.descriptor.platform)  # fmt: skip
    return Image(desc, manifest, image.config)
