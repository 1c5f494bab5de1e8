"""`builder import`: a root filesystem (a directory or a tarball) becomes a one-layer image."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import UsageError
from builder.image.config import ContainerConfig, History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.layer.apply import unpack_layer
from builder.layer.compression import Compression

if TYPE_CHECKING:
    from builder.store import Store


def import_rootfs(
    store: Store, source: Path, name: str, compression: Compression = Compression.ZSTD
) -> Descriptor:
    """Import SOURCE (a directory, or a plain/gzip/zstd tarball) and tag it NAME."""
    if source.is_dir():
        layer, diff_id = store.put_layer(source, compression)
    elif source.is_file():
        # A tarball is hostile until unpacked safely; the layer is then written from the
        # unpacked tree, so the image holds only what passed the checks, normalised.
        staging = store.tmp_dir("import")
        try:
            with open(source, "rb") as blob:
                unpack_layer(blob, staging)
            layer, diff_id = store.put_layer(staging, compression)
            store.layers.adopt(diff_id, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        raise UsageError(f"{source}: no such directory or tarball")
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    host = Platform.host()
    config = ImageConfig(
        architecture=host.architecture,
        os=host.os,
        variant=host.variant,
        created=created,
        config=ContainerConfig(),
        diff_ids=(diff_id,),
        history=(
            History(
                created=created, created_by=f"builder import {source.name}", comment="imported"
            ),
        ),
    )
    image = store.write_image(config, (layer,))
    store.layout.tag(name, image.descriptor)
    return image.descriptor
