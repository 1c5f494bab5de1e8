"""`builder export`, `-o type=tar|local`: an image's root filesystem, flattened.

Each layer is applied in order onto one directory by layer/apply's safe unpacker in its
flatten mode (whiteouts delete, opaque dirs lose what the layers below put in them; every
layer's bytes are checked against the config's diff_id on the way). The tar is then that
directory written by layer/write's tar writer, uncompressed: the same deterministic order
and headers as a layer, so the same image always gives the same bytes.

Why a directory first and not a tar-to-tar stream: a later layer may delete what an earlier
one wrote, so no entry of a lower layer can be written before every layer above it is read;
a stream would have to hold the whole tree's index in memory and read every layer twice.
Applying onto a directory is one pass of each layer, and the directory costs one write of
the tree. Measured on a one-layer gzip image of 211 MB in 9,400 files: 5.5 s in all, of which
4.3 s is unpacking (the same unpacker every layer goes through) and 1.2 s the tar; reading the
store's cached unpacked layers instead would save the unpack for images already run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from builder.image.image import Image
from builder.layer.tree import remove_tree
from builder.store.destination import output_dir, output_file

if TYPE_CHECKING:
    from builder.store import Store


def flatten(store: Store, image: Image, dest: Path) -> None:
    """Apply the image's layers, bottom first, onto `dest` (made if missing)."""
    from builder.layer.apply import unpack_layer  # lazily: tarfile is slow to import

    dest.mkdir(parents=True, exist_ok=True)
    for layer in image.layers:
        with store.layout.open(layer.blob.digest) as blob:
            unpack_layer(blob, dest, expected_diff_id=layer.diff_id, flatten=True)
            blob.read()  # to EOF, so the blob's digest is checked too


def export_rootfs_dir(store: Store, image: Image, path: Path) -> None:
    """The flattened root filesystem as a new directory `path` (whole or not at all)."""
    with output_dir(path) as tmp:
        flatten(store, image, tmp)


def write_rootfs_tar(store: Store, image: Image, out: Path | BinaryIO) -> None:
    """The flattened root filesystem as a tar, to a file (atomically) or a stream."""
    from builder.layer.compression import Compression
    from builder.layer.write import write_layer

    staging = store.tmp_dir("rootfs")
    try:
        root = staging / "root"
        flatten(store, image, root)
        if isinstance(out, Path):
            with output_file(out) as stream:
                write_layer(root, stream, Compression.NONE)
        else:
            write_layer(root, out, Compression.NONE)
    finally:
        remove_tree(staging, ignore_errors=True)
