"""The compression an image's layers are asked to have: a kind, a level, and whether to force it.

buildx spells it `compression=gzip,compression-level=N,force-compression=true` (in `-o`);
our build and import verbs spell it `--compression`, `--compression-level`,
`--force-compression`. Both end in this one value, made by `LayerCompression.from_attrs`.
"""

from __future__ import annotations

from collections.abc import Mapping

from builder.errors import UsageError
from builder.image.mediatypes import Compression
from builder.record import dataclass

# The level a compressor uses when none is asked for: zstd's own default, and gzip's (which
# docker and buildkit use too). A blob made at the default is the same variant as one made
# at that level asked for by number.
DEFAULT_LEVELS: Mapping[Compression, int] = {Compression.ZSTD: 3, Compression.GZIP: 6}
LEVEL_RANGES: Mapping[Compression, range] = {
    Compression.ZSTD: range(1, 23),
    Compression.GZIP: range(0, 10),
}
# The names a user may give a kind; BuildKit says "uncompressed" for a plain tar.
KIND_NAMES: Mapping[str, Compression] = {
    "zstd": Compression.ZSTD,
    "gzip": Compression.GZIP,
    "uncompressed": Compression.NONE,
    "none": Compression.NONE,
}
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


@dataclass(frozen=True)
class LayerCompression:
    """What every layer of an output must be compressed with.

    `level` None means the kind's default (see `effective_level`). `force`: also redo a
    layer whose blob already has this kind but not exactly this level (or a level nobody
    recorded, as in a pulled blob), so the output's blobs are our own bytes.
    """

    kind: Compression = Compression.ZSTD
    level: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.level is None:
            return
        allowed = LEVEL_RANGES.get(self.kind)
        if allowed is None:
            raise UsageError(f"compression-level: {self.kind.value} layers have no level")
        if self.level not in allowed:
            raise UsageError(
                f"compression-level={self.level}: {self.kind.value} levels are "
                f"{allowed.start}-{allowed.stop - 1}"
            )

    @property
    def effective_level(self) -> int | None:
        """The level the compressor runs at (None for uncompressed layers)."""
        return self.level if self.level is not None else DEFAULT_LEVELS.get(self.kind)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, str]) -> LayerCompression | None:
        """From buildx's `-o` keys (`compression`, `compression-level`, `force-compression`);
        other keys are ignored. None when none of the three is given: nothing is asked."""
        kind_text = attrs.get("compression")
        level_text = attrs.get("compression-level")
        force_text = attrs.get("force-compression")
        if kind_text is None and level_text is None and force_text is None:
            return None
        kind = Compression.ZSTD
        if kind_text is not None:
            if kind_text.lower() not in KIND_NAMES:
                names = ", ".join(n for n in KIND_NAMES if n != "none")
                raise UsageError(f"compression={kind_text}: expected one of {names}")
            kind = KIND_NAMES[kind_text.lower()]
        level = None
        if level_text is not None:
            try:
                level = int(level_text)
            except ValueError:
                raise UsageError(f"compression-level={level_text}: not a number") from None
        force = False
        if force_text is not None:
            if force_text.lower() not in _TRUE | _FALSE:
                raise UsageError(f"force-compression={force_text}: expected true or false")
            force = force_text.lower() in _TRUE
        return cls(kind, level, force)

    @classmethod
    def coerce(cls, value: LayerCompression | str | None) -> LayerCompression | None:
        """A value as BuildOptions may hold it: a kind's name stands for that kind."""
        if value is None or isinstance(value, LayerCompression):
            return value
        return cls.from_attrs({"compression": value})
