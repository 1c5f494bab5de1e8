import hashlib

import pytest

from builder.errors import UsageError
from builder.image.canonical import canonical_json
from builder.image.digest import Digest, DigestError
from builder.image.mediatypes import Compression, MediaType


def test_of_bytes_matches_hashlib() -> None:
    d = Digest.of_bytes(b"hello")
    assert d == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert d.algorithm == "sha256"
    assert d.hex == hashlib.sha256(b"hello").hexdigest()
    assert Digest.of_bytes(b"x", "sha512").algorithm == "sha512"


@pytest.mark.parametrize(
    "bad",
    ["", "sha256:", "sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 32, "sha512:" + "0" * 64,
     "sha256:" + "0" * 64 + "\n", "0" * 64],
)  # fmt: skip
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(DigestError) as info:
        Digest.parse(bad)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == (
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()
    )


def test_media_type_predicates() -> None:
    assert MediaType.OCI_LAYER_ZSTD.is_layer and MediaType.DOCKER_LAYER.is_layer
    assert not MediaType.OCI_CONFIG.is_layer
    assert MediaType.OCI_MANIFEST.is_manifest and MediaType.DOCKER_MANIFEST.is_manifest
    assert MediaType.OCI_INDEX.is_index and MediaType.DOCKER_MANIFEST_LIST.is_index
    assert MediaType.OCI_LAYER_ZSTD.compression() is Compression.ZSTD
    assert MediaType.DOCKER_LAYER.compression() is Compression.GZIP
    assert MediaType.OCI_LAYER.compression() is Compression.NONE
    for c in Compression:
        assert MediaType.for_layer(c).compression() is c
    with pytest.raises(ValueError):
        MediaType.OCI_CONFIG.compression()
