"""`builder save`: images from the store as an OCI archive (a tar of an OCI image layout).

The index names each image as `docker save` (OCI format) does: the full name in
`io.containerd.image.name` and the tag alone in `org.opencontainers.image.ref.name`, so
skopeo's `oci-archive:FILE` and `oci-archive:FILE:TAG` both find it.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from builder.image.canonical import canonical_json
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.reference import Reference

if TYPE_CHECKING:
    from builder.store import Store

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def _blobs(store: Store, manifest: Descriptor) -> Iterator[Digest]:
    yield manifest.digest
    m = store.manifest(manifest)
    yield m.config.digest
    for layer in m.layers:
        yield layer.digest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def save_oci_archive(store: Store, names: Sequence[str], out: Path) -> None:
    entries = []
    digests: dict[Digest, None] = {}
    for name in names:
        desc = store.resolve(name)
        ref = Reference.parse(name)
        annotations = {
            "io.containerd.image.name": str(ref),
            "org.opencontainers.image.ref.name": ref.tag or "latest",
        }
        entries.append(desc.with_annotations(annotations).to_json())
        digests.update(dict.fromkeys(_blobs(store, desc)))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with (
            open(tmp, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            _add_bytes(tar, "oci-layout", OCI_LAYOUT)
            _add_bytes(tar, "index.json", canonical_json(index))
            for info in (tarfile.TarInfo("blobs"), tarfile.TarInfo("blobs/sha256")):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for digest in digests:
                path = store.blob_path(digest)
                info = tarfile.TarInfo(f"blobs/{digest.algorithm}/{digest.hex}")
                info.size, info.mode = path.stat().st_size, 0o644
                with store.open_blob(digest) as blob:
                    tar.addfile(info, blob)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def image_json(store: Store, name: str) -> dict[str, object]:
    """What `builder inspect` prints: the manifest digest, the image ID, manifest and config."""
    desc = store.resolve(name)
    manifest = store.manifest(desc)
    config = store.config(manifest)
    return {
        "Name": name,
        "Id": str(manifest.config.digest),
        "Digest": str(desc.digest),
        "Manifest": manifest.to_json(),
        "Config": config.to_json(),
        "Size": sum(layer.size for layer in manifest.layers),
    }
