"""root/variants: a layer's blob in each compression, keyed by its diff_id.

One layer (one diff_id, one tar) may be stored as several blobs: zstd, gzip, plain, and each
at several levels. A record per (diff_id, kind, level) names its blob, so a build asked for
gzip after a zstd build finds the gzip blob, or makes it once by converting (`blob_for`).
Every layer blob the store writes is recorded (build steps, import, conversion); a pull
records what it fetched with level None, since nobody says what level a registry's blob has.

Like the build cache, the records are an accelerator: one that is missing, malformed, or
whose blob gc swept is a miss. gc keeps a record (and its blob) while its diff_id is
reachable from an image or a step record.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from builder.errors import StoreError
from builder.image.canonical import canonical_json
from builder.image.compression import LayerCompression
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest, DigestError
from builder.image.fields import FormatError
from builder.image.image import Layer
from builder.image.mediatypes import Compression, MediaType
from builder.record import dataclass
from builder.store.atomic import write_atomic
from builder.store.blobs import BlobStore
from builder.store.paths import StorePaths
from builder.store.removal import remove


def compression_of(blob: Descriptor) -> Compression | None:
    """The compression a layer descriptor's media type names; None for a type we do not know."""
    media_type = blob.media_type
    if not isinstance(media_type, MediaType) or not media_type.is_layer:
        return None
    return media_type.compression()


@dataclass(frozen=True)
class Variant:
    """One blob of a layer. `level` is None for a plain tar, and for a compressed blob whose
    level nobody recorded (a pulled one)."""

    diff_id: Digest
    compression: Compression
    level: int | None
    layer: Descriptor

    @property
    def name(self) -> str:
        return self.compression.value + ("" if self.level is None else f"-{self.level}")

    def to_json(self) -> dict[str, Any]:
        return {
            "diff_id": str(self.diff_id),
            "compression": self.compression.value,
            "level": self.level,
            "layer": self.layer.to_json(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Variant:
        if not isinstance(value, Mapping):
            raise FormatError("variant record: not a JSON object")
        level = value.get("level")
        if level is not None and (not isinstance(level, int) or isinstance(level, bool)):
            raise FormatError("variant record: 'level' must be an integer or null")
        diff_id = value.get("diff_id")
        if not isinstance(diff_id, str):
            raise FormatError("variant record: 'diff_id' must be a string")
        return cls(
            diff_id=Digest.parse(diff_id),
            compression=Compression(str(value.get("compression"))),
            level=level,
            layer=Descriptor.from_json(value.get("layer")),
        )


class LayerVariants:
    def __init__(self, paths: StorePaths, blobs: BlobStore) -> None:
        self._paths = paths
        self._blobs = blobs

    def _dir(self, diff_id: Digest) -> Path:
        return self._paths.variants / diff_id.hex

    def record(self, diff_id: Digest, layer: Descriptor, level: int | None) -> None:
        """Note that `layer` is `diff_id`'s blob in its media type's compression at `level`
        (None: not known). A blob of a media type we do not know is not recorded."""
        compression = compression_of(layer)
        if compression is None:
            return
        if compression is Compression.NONE:
            level = None
        variant = Variant(diff_id, compression, level, layer)
        directory = self._dir(diff_id)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{variant.name}.json"
        write_atomic(path, canonical_json(variant.to_json()), self._paths.tmp)

    def _read(self, path: Path, diff_id: Digest) -> Variant | None:
        try:
            variant = Variant.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError):  # missing, torn, not ours (FormatError is a ValueError)
            return None
        if variant.diff_id != diff_id or path.name != f"{variant.name}.json":
            return None  # a record under the wrong name says nothing about this one
        if self._blobs.stat(variant.layer.digest) is None:
            return None  # gc swept it, or it was never written whole
        return variant

    def get(self, diff_id: Digest, compression: Compression, level: int | None) -> Variant | None:
        """The blob of exactly this compression and level, if the store has it."""
        if compression is Compression.NONE:
            level = None
        name = compression.value + ("" if level is None else f"-{level}")
        return self._read(self._dir(diff_id) / f"{name}.json", diff_id)

    def of(self, diff_id: Digest) -> list[Variant]:
        """Every blob of the layer the store has, in name order (deterministic)."""
        directory = self._dir(diff_id)
        if not directory.is_dir():
            return []
        found = (self._read(path, diff_id) for path in sorted(directory.glob("*.json")))
        return [v for v in found if v is not None]

    def blob_for(self, layer: Layer, want: LayerCompression) -> Descriptor:
        """The blob of `layer` an output asked for `want` uses; converted now if need be.

        The blob made at exactly the requested level wins. Otherwise, without `force`, any
        blob already of the requested kind does (the layer's own first, then a recorded
        one), as BuildKit keeps an existing blob; with `force`, or when no blob of the kind
        exists, the layer is recompressed at the requested level.
        """
        level = want.effective_level
        exact = self.get(layer.diff_id, want.kind, level)
        if exact is not None:
            return exact.layer
        if not want.force:
            if compression_of(layer.blob) is want.kind:
                return layer.blob
            for variant in self.of(layer.diff_id):
                if variant.compression is want.kind:
                    return variant.layer
        return self.convert(layer, want.kind, level)

    def convert(self, layer: Layer, compression: Compression, level: int | None) -> Descriptor:
        """Recompress the layer's blob; the source is verified against its digest and the
        tar against the diff_id before the new blob is committed (else StoreError, nothing
        written)."""
        from builder.layer.recompress import recompress  # lazily: a cached build needs none

        with self._blobs.writer() as out:
            with self._blobs.open(layer.blob.digest) as source:
                digests = recompress(source, out, compression, level)
                source.read()  # to EOF, so the source's digest is checked even if unread
            if digests.diff_id != layer.diff_id:
                raise StoreError(
                    f"layer blob {layer.blob.digest} holds a tar that hashes to "
                    f"{digests.diff_id}, not its diff_id {layer.diff_id}"
                )
            desc = out.commit(digests.media_type)
        self.record(layer.diff_id, desc, level)
        return desc

    # -- for gc ------------------------------------------------------------------------------

    def diff_ids(self) -> Iterator[Digest]:
        if not self._paths.variants.is_dir():
            return
        for path in self._paths.variants.iterdir():
            with contextlib.suppress(DigestError):  # a stray name is no record of ours
                yield Digest.from_hex(path.name)

    def delete(self, diff_id: Digest) -> int:
        """Drop every record of the layer (the blobs stay; gc sweeps them)."""
        return remove(self._dir(diff_id))

    def clear(self) -> int:
        return remove(self._paths.variants)
