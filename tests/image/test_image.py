"""The Image value: a manifest and config paired layer by layer, or refused."""

from __future__ import annotations

import pytest

from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.image import Image, Layer
from builder.image.manifest import Manifest
from builder.image.mediatypes import MediaType


def _desc(media_type: MediaType, content: bytes, size: int = 10) -> Descriptor:
    return Descriptor(media_type, Digest.of_bytes(content), size)


CONFIG = _desc(MediaType.OCI_CONFIG, b"config", 5)
LAYERS = (_desc(MediaType.OCI_LAYER_ZSTD, b"a", 100), _desc(MediaType.OCI_LAYER_ZSTD, b"b", 23))
DIFF_IDS = (Digest.of_bytes(b"tar a"), Digest.of_bytes(b"tar b"))
MANIFEST = _desc(MediaType.OCI_MANIFEST, b"manifest", 300)


def _config(diff_ids: tuple[Digest, ...]) -> ImageConfig:
    config = ImageConfig()
    for diff_id in diff_ids:
        config = config.with_layer(diff_id, History(created_by="x"))
    return config


def test_layers_pair_each_blob_with_its_diff_id() -> None:
    image = Image(MANIFEST, Manifest(CONFIG, LAYERS), _config(DIFF_IDS))
    assert image.layers == (Layer(LAYERS[0], DIFF_IDS[0]), Layer(LAYERS[1], DIFF_IDS[1]))
    assert image.id == CONFIG.digest and image.digest == MANIFEST.digest
    assert image.size == 123
    assert list(image.blobs()) == [MANIFEST, CONFIG, *LAYERS]


@pytest.mark.parametrize("diff_ids", [DIFF_IDS[:1], (*DIFF_IDS, Digest.of_bytes(b"c"))])
def test_layer_count_mismatch_is_a_format_error(diff_ids: tuple[Digest, ...]) -> None:
    with pytest.raises(
        FormatError, match=f"the manifest has 2 layers but the config lists {len(diff_ids)}"
    ):
        Image(MANIFEST, Manifest(CONFIG, LAYERS), _config(diff_ids))
