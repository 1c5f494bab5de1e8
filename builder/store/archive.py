"""`builder save`: images from the store as an OCI archive (a tar of an OCI image layout).

The index names each image as `docker save` and buildx's `-o type=oci` do: the fully
qualified name (`docker.io/library/app:1`, as containerd spells it: podman loads a short
name as `localhost/app`) in `io.containerd.image.name`, and the tag alone in
`org.opencontainers.image.ref.name`, so skopeo's `oci-archive:FILE` and
`oci-archive:FILE:TAG` both find it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from builder.image.canonical import canonical_json
from builder.image.reference import Reference
from builder.store.export import LayoutReader, write_archive

if TYPE_CHECKING:
    from builder.store import Store

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


class OciArchiveWriter:
    """An ArchiveWriter: oci-layout, index.json, then blobs/sha256/<hex>, in a PAX tar."""

    def write(self, source: LayoutReader, out: BinaryIO) -> None:
        entries = []
        for named in source.images:
            annotations = None
            if named.name is not None:
                annotations = {
                    "io.containerd.image.name": qualified(named.name),
                    "org.opencontainers.image.ref.name": named.name.tag or "latest",
                }
            entries.append(named.image.descriptor.with_annotations(annotations).to_json())
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "oci-layout", OCI_LAYOUT)
            add_bytes(tar, "index.json", canonical_json(index))
            for info in (tarfile.TarInfo("blobs"), tarfile.TarInfo("blobs/sha256")):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for blob in source.blobs():
                info = tarfile.TarInfo(f"blobs/{blob.digest.algorithm}/{blob.digest.hex}")
                info.size, info.mode = source.size(blob), 0o644
                with source.open(blob) as stream:
                    tar.addfile(info, stream)
                    stream.read()  # to EOF: tarfile stops at info.size, before the check


def qualified(ref: Reference) -> str:
    """The name with its registry and full repository path: docker.io/library/busybox:1."""
    text = f"{ref.registry}/{ref.repository}"
    if ref.tag is not None:
        text += f":{ref.tag}"
    if ref.digest is not None:
        text += f"@{ref.digest}"
    return text


def save_oci_archive(store: Store, names: Sequence[str], out: Path | BinaryIO) -> None:
    write_archive(LayoutReader(store.layout, names), out, OciArchiveWriter())
