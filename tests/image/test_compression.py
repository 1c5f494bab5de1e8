"""LayerCompression: the one value `--compression*` flags and buildx's `-o` keys fill."""

from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.image.compression import LayerCompression
from builder.image.mediatypes import Compression


def test_buildx_keys_make_the_value() -> None:
    attrs = {"type": "image", "compression": "gzip", "compression-level": "9",
             "force-compression": "true"}  # fmt: skip
    assert LayerCompression.from_attrs(attrs) == LayerCompression(Compression.GZIP, 9, True)
    assert LayerCompression.from_attrs({"compression": "uncompressed"}) == LayerCompression(
        Compression.NONE
    )
    assert LayerCompression.from_attrs({"force-compression": "false"}) == LayerCompression()
    # A level alone is a request for the default kind at that level.
    assert LayerCompression.from_attrs({"compression-level": "19"}) == LayerCompression(
        Compression.ZSTD, 19
    )


def test_no_key_is_no_request() -> None:
    assert LayerCompression.from_attrs({"type": "image", "name": "x"}) is None
    assert LayerCompression.coerce(None) is None
    assert LayerCompression.coerce("gzip") == LayerCompression(Compression.GZIP)


def test_the_default_level_is_the_same_variant_as_asking_for_it() -> None:
    assert LayerCompression(Compression.ZSTD).effective_level == 3
    assert LayerCompression(Compression.GZIP).effective_level == 6
    assert LayerCompression(Compression.GZIP, 1).effective_level == 1
    assert LayerCompression(Compression.NONE).effective_level is None


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"compression": "lz4"}, "compression=lz4: expected one of zstd, gzip, uncompressed"),
        ({"compression": "gzip", "compression-level": "10"}, "gzip levels are 0-9"),
        ({"compression": "zstd", "compression-level": "0"}, "zstd levels are 1-22"),
        ({"compression": "zstd", "compression-level": "23"}, "zstd levels are 1-22"),
        ({"compression-level": "high"}, "not a number"),
        ({"compression": "uncompressed", "compression-level": "1"}, "none layers have no level"),
        ({"force-compression": "yes"}, "expected true or false"),
    ],
)
def test_bad_values_are_usage_errors(attrs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        LayerCompression.from_attrs(attrs)
