"""root/cache: the build cache, one JSON record per key, read back as typed records.

The cache is an accelerator: a record that is missing, truncated by a crash, not JSON, or
of the wrong shape is a miss (the step runs again and writes it anew), never an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from builder.errors import StoreError
from builder.image.canonical import canonical_json
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.record import dataclass
from builder.store.atomic import write_atomic
from builder.store.paths import StorePaths
from builder.store.removal import remove, remove_children

if TYPE_CHECKING:
    from builder.layer.frames import FrameIndex

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$")


class CacheRecord(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """The record, or ValueError (FormatError is one) if `value` is not one."""
        ...


R = TypeVar("R", bound=CacheRecord)


@dataclass(frozen=True)
class StepRecord:
    """What a RUN/COPY/WORKDIR step made: its layer and when, or no layer (it changed no file).

    The only records that name blobs and unpacked layers: gc keeps what they name.
    """

    created: str
    layer: Descriptor | None = None
    diff_id: Digest | None = None

    def __post_init__(self) -> None:
        if (self.layer is None) != (self.diff_id is None):
            raise FormatError("step record: a layer and its diff_id go together")

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "layer": None if self.layer is None else self.layer.to_json(),
            **({} if self.diff_id is None else {"diff_id": str(self.diff_id)}),
        }

    @classmethod
    def from_json(cls, value: Any) -> StepRecord:
        if not isinstance(value, Mapping):
            raise FormatError("step record: not a JSON object")
        created = value.get("created")
        if not isinstance(created, str):
            raise FormatError("step record: 'created' must be a string")
        layer, diff_id = value.get("layer"), value.get("diff_id")
        if layer is None:
            return cls(created)
        if not isinstance(diff_id, str):
            raise FormatError("step record: 'diff_id' must be a string")
        return cls(created, Descriptor.from_json(layer), Digest.parse(diff_id))


@dataclass(frozen=True)
class JsonRecord:
    """A record whose shape its writer owns (the engine's recipe and context memos): any
    JSON object. Its reader still checks each field it takes."""

    value: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.value)

    @classmethod
    def from_json(cls, value: Any) -> JsonRecord:
        if not isinstance(value, dict):
            raise FormatError("record: not a JSON object")
        return cls(value)


def _frames_key(blob: Digest) -> str:
    return f"frames-{blob.algorithm}-{blob.hex}"


class BuildCache:
    def __init__(self, paths: StorePaths) -> None:
        self._paths = paths

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise StoreError(f"invalid cache key {key!r}")
        return self._paths.cache / f"{key}.json"

    def get(self, key: str, kind: type[R]) -> R | None:
        """The record under `key` if there is one and it reads as a `kind`; else None."""
        try:
            return kind.from_json(json.loads(self._path(key).read_bytes()))
        except (OSError, ValueError):
            return None  # missing, unreadable or malformed (DigestError is a ValueError too)

    def put(self, key: str, record: CacheRecord) -> None:
        write_atomic(self._path(key), canonical_json(record.to_json()), self._paths.tmp)

    def frames(self, blob: Digest) -> FrameIndex | None:
        """The frame index kept for a layer blob (layer/frames), if any."""
        from builder.layer.frames import FrameIndex  # lazily: a cached build never needs it

        return self.get(_frames_key(blob), FrameIndex)

    def keep_frames(self, blob: Digest, index: FrameIndex) -> None:
        """Keep a layer blob's frame index beside the records, for the next version of the
        layer to reuse its frames. Like every record, a lost one is a miss (frames are
        compressed again), never an error."""
        self.put(_frames_key(blob), index)

    def stored_keys(self) -> Iterator[str]:
        for path in sorted(self._paths.cache.glob("*.json")):
            key = path.name.removesuffix(".json")
            if _KEY.fullmatch(key):  # no other name is a record this cache wrote
                yield key

    def delete(self, key: str) -> int:
        return remove(self._path(key))

    def clear(self) -> int:
        """Drop every record; returns the bytes freed."""
        return remove_children(self._paths.cache)
