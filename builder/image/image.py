"""An image as the code passes it around: its manifest's descriptor, the manifest, the config,
and each layer blob paired with the diff ID the config gives it.

One value, so the manifest -> config -> layers walk is written once (the store's loader) and
the engine, runtime, CLI and exporters read fields instead of walking again.
"""

from __future__ import annotations

from collections.abc import Iterator

from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.manifest import Manifest
from builder.record import dataclass


@dataclass(frozen=True)
class Layer:
    """A layer blob (as stored, maybe compressed) and the digest of its uncompressed tar."""

    blob: Descriptor
    diff_id: Digest


@dataclass(frozen=True)
class Image:
    descriptor: Descriptor  # the manifest's: what index.json and registries name
    manifest: Manifest
    config: ImageConfig

    def __post_init__(self) -> None:
        # The pairing is the point of the value: a manifest and config that disagree on the
        # number of layers are a broken image, refused here rather than by a zip() later.
        if len(self.manifest.layers) != len(self.config.diff_ids):
            raise FormatError(
                f"image {self.descriptor.digest}: the manifest has {len(self.manifest.layers)}"
                f" layers but the config lists {len(self.config.diff_ids)} diff_ids"
            )

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(
            Layer(blob, diff_id)
            for blob, diff_id in zip(self.manifest.layers, self.config.diff_ids, strict=True)
        )

    @property
    def id(self) -> Digest:
        """The image ID, as docker shows it: the config's digest."""
        return self.manifest.config.digest

    @property
    def digest(self) -> Digest:
        """The manifest's digest (what `name@sha256:...` pins)."""
        return self.descriptor.digest

    @property
    def size(self) -> int:
        """The stored size of the layers (what `builder images` shows)."""
        return sum(layer.size for layer in self.manifest.layers)

    def blobs(self) -> Iterator[Descriptor]:
        """Every blob the image is made of: the manifest, the config, the layers, in order."""
        yield self.descriptor
        yield self.manifest.config
        yield from self.manifest.layers
