"""Docker schema 2 media types: a new manifest over the same config and layer blobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.image.config import ImageConfig
from builder.image.mediatypes import Compression, MediaType
from builder.store import Store
from builder.store.docker_types import DOCKER_LAYER_PLAIN, with_docker_media_types
from tests.store.support import make_image


def test_gzip_and_plain_layers_get_docker_types(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    gz = make_image(store, tmp_path, "one")  # a gzip layer
    src = tmp_path / "plain"
    src.mkdir()
    (src / "f").write_text("p")
    plain, diff_id = store.put_layer(src, Compression.NONE)
    config = gz.config.with_layer(diff_id, gz.config.history[0])
    image = store.write_image(config, [*gz.manifest.layers, plain])
    docker = with_docker_media_types(store, image)
    raw = json.loads(store.layout.read(docker.digest))
    assert raw["mediaType"] == MediaType.DOCKER_MANIFEST
    assert raw["config"]["mediaType"] == MediaType.DOCKER_CONFIG
    assert [x["mediaType"] for x in raw["layers"]] == [MediaType.DOCKER_LAYER, DOCKER_LAYER_PLAIN]
    assert docker.id == image.id  # the same config bytes: the same image ID
    assert [x.digest for x in docker.manifest.layers] == [x.digest for x in image.manifest.layers]
    assert store.image(docker.descriptor).config == image.config
    assert with_docker_media_types(store, docker) is docker


def test_a_zstd_layer_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    src = tmp_path / "src"
    src.mkdir()
    layer, diff_id = store.put_layer(src, Compression.ZSTD)
    image = store.write_image(ImageConfig(diff_ids=(diff_id,)), [layer])
    with pytest.raises(UsageError, match=r"layer 1 \(sha256:\w+\) is zstd.*--compression gzip"):
        with_docker_media_types(store, image)
