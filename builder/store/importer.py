"""`builder import`: a root filesystem (a directory or a tarball) becomes a one-layer image."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import UsageError
from builder.image.config import ContainerConfig, History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.epoch import created_at
from builder.layer.apply import unpack_layer
from builder.layer.compression import Compression
from builder.layer.tree import remove_tree
from builder.store.space import writing

if TYPE_CHECKING:
    from builder.store import Store


def import_rootfs(
    store: Store,
    source: Path,
    name: str,
    compression: Compression = Compression.ZSTD,
    *,
    source_date_epoch: int | None = None,
    level: int | None = None,
    config: ContainerConfig | None = None,
    message: str | None = None,
) -> Descriptor:
    """Import SOURCE (a directory, or a plain/gzip/zstd tarball) and tag it NAME.

    `config` is the image's container config (docker import --change), `message` the
    history's comment (-m), which is, as docker writes it, the only thing it says.

    With `source_date_epoch`, the image's `created` is that time and no mtime in the layer
    is later: the same rootfs gives the same image ID wherever and whenever it is imported.
    `level` is the compressor's (None: its default).
    """
    clamp = source_date_epoch
    if source.is_dir():
        layer, diff_id = store.put_layer(source, compression, mtime_clamp=clamp, level=level)
    elif source.is_file():
        # A tarball is hostile until unpacked safely; the layer is then written from the
        # unpacked tree, so the image holds only what passed the checks, normalised.
        staging = store.tmp_dir("import")
        try:
            with writing(f"the import of {source.name}", store.root), open(source, "rb") as blob:
                unpack_layer(blob, staging)
            layer, diff_id = store.put_layer(staging, compression, mtime_clamp=clamp, level=level)
            store.layers.adopt(diff_id, staging)
        finally:
            remove_tree(staging, ignore_errors=True)
    else:
        raise UsageError(f"{source}: no such directory or tarball")
    if source_date_epoch is None:
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        created = created_at(source_date_epoch)
    host = Platform.host()
    image_config = ImageConfig(
        architecture=host.architecture,
        os=host.os,
        variant=host.variant,
        created=created,
        config=config or ContainerConfig(),
        diff_ids=(diff_id,),
        history=(History(created=created, comment=message or f"Imported from {source.name}"),),
    )
    image = store.write_image(image_config, (layer,))
    store.layout.tag(name, image.descriptor)
    store.unpacked(image)  # at once, as docker does: the first build or run starts from it
    return image.descriptor
