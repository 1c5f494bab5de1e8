"""`builder save --format docker`, `-o type=docker`: the archive `docker save` writes.

The form is the one every reader of the format reads: `manifest.json` (a list of
{Config, RepoTags, Layers}), the config as `<config hex>.json`, and each layer as
`<diff_id hex>.tar`, uncompressed. That is what skopeo's `docker-archive:` writes; docker
load (20.10 and later), podman load and skopeo read it. Docker's loader would take gzip
layers too, but not every version takes zstd, and an uncompressed layer needs no media type
at all: its file's digest is its diff_id, which is what `docker load` checks the config
against. There is no legacy `<id>/json` tree: every reader since docker 1.10 reads
manifest.json.

A compressed blob is decompressed into a temp file first (a tar header holds the size before
the data, and only a full pass tells the uncompressed size); the stream is checked against
the config's diff_id on the way, so a layer that does not match is never written out.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from builder.errors import LayerError
from builder.image.canonical import canonical_json
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.image import Layer
from builder.image.mediatypes import Compression, media_type
from builder.image.reference import Reference
from builder.store.archive import add_bytes
from builder.store.export import LayoutReader, write_archive

if TYPE_CHECKING:
    from builder.store import Store

_CHUNK = 1 << 20


def repo_tag(name: Reference) -> str | None:
    """The RepoTags spelling of a name, fully qualified as skopeo writes it
    (`docker.io/library/busybox:latest`: podman reads a short name as `localhost/...`);
    None for a digest-only name, which no RepoTag can hold."""
    if name.tag is None:
        return None
    return f"{name.registry}/{name.repository}:{name.tag}"


def _compression(layer: Layer) -> Compression:
    mt = media_type(str(layer.blob.media_type))
    try:
        return mt.compression() if not isinstance(mt, str) else Compression.NONE
    except ValueError:
        return Compression.NONE


class DockerArchiveWriter:
    """An ArchiveWriter: layers, configs, then manifest.json, in a PAX tar."""

    def __init__(self, spool_dir: Path | None = None) -> None:
        self._spool_dir = spool_dir  # where compressed layers are decompressed to (the store's tmp)

    def write(self, source: LayoutReader, out: BinaryIO) -> None:
        entries: dict[Digest, dict[str, object]] = {}  # by manifest digest, in order
        for named in source.images:
            image = named.image
            entry = entries.get(image.digest)
            if entry is None:
                entry = {
                    "Config": f"{image.id.hex}.json",
                    "RepoTags": [],
                    "Layers": [f"{layer.diff_id.hex}.tar" for layer in image.layers],
                }
                entries[image.digest] = entry
            tag = repo_tag(named.name) if named.name is not None else None
            tags = entry["RepoTags"]
            assert isinstance(tags, list)
            if tag is not None and tag not in tags:
                tags.append(tag)
        written: set[str] = set()
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for named in source.images:
                for layer in named.image.layers:
                    name = f"{layer.diff_id.hex}.tar"
                    if name not in written:
                        written.add(name)
                        self._add_layer(tar, source, layer, name)
                config = f"{named.image.id.hex}.json"
                if config not in written:
                    written.add(config)
                    self._add_blob(tar, source, named.image.manifest.config, config)
            add_bytes(tar, "manifest.json", canonical_json(list(entries.values())))

    @staticmethod
    def _add_blob(tar: tarfile.TarFile, source: LayoutReader, blob: Descriptor, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = source.size(blob), 0o644
        with source.open(blob) as stream:
            tar.addfile(info, stream)
            stream.read()  # to EOF: the digest is checked there

    def _add_layer(
        self, tar: tarfile.TarFile, source: LayoutReader, layer: Layer, name: str
    ) -> None:
        if _compression(layer) is Compression.NONE and layer.blob.digest == layer.diff_id:
            self._add_blob(tar, source, layer.blob, name)
            return
        from builder.layer.compression import open_decompressed

        with (
            tempfile.TemporaryFile(dir=self._spool_dir) as spool,
            source.open(layer.blob) as blob,
        ):
            tar_hash = hashlib.sha256()
            plain = open_decompressed(blob)
            while chunk := plain.read(_CHUNK):
                tar_hash.update(chunk)
                spool.write(chunk)
            blob.read()  # to EOF: the blob's digest is checked there
            got = Digest.from_hash(tar_hash)
            if got != layer.diff_id:
                raise LayerError(
                    f"layer {layer.blob.digest} holds {got}, not the diff_id "
                    f"{layer.diff_id} its config names"
                )
            info = tarfile.TarInfo(name)
            info.size, info.mode = spool.tell(), 0o644
            spool.seek(0)
            tar.addfile(info, spool)


def save_docker_archive(store: Store, names: Sequence[str], out: Path | BinaryIO) -> None:
    write_archive(LayoutReader(store.layout, names), out, DockerArchiveWriter(store.paths.tmp))
