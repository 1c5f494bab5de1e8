"""`builder load -i FILE`: images from an OCI archive or a docker archive into the store.

The archive is untrusted. It is never extracted: its members are read in place, by name,
from the tar file (a compressed archive is first decompressed into a temp file in the store,
so members can be read in any order). Before anything is stored:
  - every member name is checked: an absolute name or a `..` component refuses the archive;
  - every member must lie inside the file (a header can claim any size: tarfile checks it
    as it reads the headers, and the message says so);
  - the documents read into memory (index.json, manifest.json, manifests, configs) must be
    regular files of at most MAX_DOCUMENT bytes: a symlinked or huge manifest.json is refused;
  - every blob streams through the store's blob writer, which hashes it; it must match the
    digest and size its descriptor names (OCI), and every layer's uncompressed tar must match
    the diff_id its config names (both formats), checked in the same pass.
Only when every image of the archive has passed are the blobs committed and the names
tagged, so a refused archive adds nothing to the store. Unsafe or corrupt content is a
LayerError (exit 7).
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from builder.errors import LayerError, UsageError
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.manifest import Index, Manifest
from builder.image.mediatypes import MediaType, media_type
from builder.image.reference import Reference
from builder.record import dataclass
from builder.store.blobs import BlobWriter

if TYPE_CHECKING:
    from builder.store import Store

MAX_DOCUMENT = 4 << 20  # bytes: the OCI distribution spec's limit for a manifest
_MAX_LINKS = 8  # symlink hops between the members of a docker archive
_CHUNK = 1 << 20
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Loaded:
    """An image the archive held: its manifest descriptor and the names it was tagged with."""

    descriptor: Descriptor
    names: tuple[str, ...]


def _bad(archive: str, why: str) -> LayerError:
    return LayerError(f"{archive}: {why}")


def _parts(name: str, archive: str) -> tuple[str, ...]:
    if name.startswith("/"):
        raise _bad(archive, f"archive entry {name!r}: absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _bad(archive, f"archive entry {name!r}: '..' in path")
    return parts


class _Archive:
    """The members of a plain tar file, by normalized name, read in place."""

    def __init__(self, f: BinaryIO, label: str) -> None:
        self.label = label
        try:
            self._tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115  # lives with f
            members = self._tar.getmembers()
        except tarfile.ReadError as err:
            if str(err) == "unexpected end of data":  # tarfile's words for a member past EOF
                raise _bad(
                    label,
                    "the archive ends inside an entry: truncated, or an entry declares"
                    " more bytes than the archive holds",
                ) from None
            raise _bad(label, f"not a readable tar archive: {err}") from None
        except (tarfile.TarError, EOFError) as err:
            raise _bad(label, f"not a readable tar archive: {err}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            key = "/".join(_parts(m.name, label))
            if not key:
                continue
            if key in self.members and not (m.isdir() and self.members[key].isdir()):
                raise _bad(label, f"archive entry {m.name!r} appears twice")
            self.members[key] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def regular(self, name: str, *, follow: bool = False) -> tarfile.TarInfo:
        """The member `name`, which must be a regular file; with `follow`, symlinks (docker
        save links a layer it already wrote) are resolved inside the archive."""
        key = "/".join(_parts(name, self.label))
        for _ in range(_MAX_LINKS):
            m = self.members.get(key)
            if m is None:
                raise _bad(self.label, f"{name!r} is missing from the archive")
            if m.isreg():
                return m
            if not (follow and m.issym()):
                raise _bad(self.label, f"{name!r} is not a regular file in the archive")
            target = posixpath.join(posixpath.dirname(key), m.linkname)
            if m.linkname.startswith("/") or posixpath.normpath(target).startswith(".."):
                raise _bad(self.label, f"{name!r} links outside the archive")
            key = posixpath.normpath(target)
        raise _bad(self.label, f"{name!r}: too many symbolic links")

    def open(self, member: tarfile.TarInfo) -> BinaryIO:
        stream = self._tar.extractfile(member)
        assert stream is not None  # a regular file always has a stream
        return cast(BinaryIO, stream)

    def document(self, name: str, size: int | None = None) -> bytes:
        """A small regular member's bytes (a JSON document), bounded before it is read."""
        m = self.regular(name)
        if m.size > MAX_DOCUMENT:
            raise _bad(self.label, f"{name!r} is {m.size} bytes, more than {MAX_DOCUMENT}")
        if size is not None and m.size != size:
            raise _bad(self.label, f"{name!r} is {m.size} bytes, its descriptor says {size}")
        with self.open(m) as f:
            return f.read()

    def json(self, name: str, size: int | None = None) -> Any:
        try:
            return json.loads(self.document(name, size))
        except ValueError as err:
            raise _bad(self.label, f"{name!r} is not valid JSON: {err}") from None


class _Tee:
    """Read from `inner`, writing every byte read to the blob writer too (one pass both ways:
    the blob as stored, and the tar inside it for its diff_id)."""

    def __init__(self, inner: BinaryIO, writer: BlobWriter) -> None:
        self._inner = inner
        self._writer = writer
        self.head = b""  # the first bytes: what the compression is

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data:
            self._writer.write(data)
            if len(self.head) < 4:
                self.head += data[: 4 - len(self.head)]
        return data


class _Staging:
    """Blobs written to the store's temp files, committed together or not at all."""

    def __init__(self, store: Store, stack: contextlib.ExitStack, label: str) -> None:
        self._store = store
        self._stack = stack
        self._label = label
        self._pending: dict[Digest, tuple[BlobWriter, MediaType | str]] = {}
        self._diff_ids: dict[Digest, Digest] = {}  # layer blob -> the diff_id checked

    def _writer(self) -> BlobWriter:
        return self._stack.enter_context(self._store.layout.writer())

    def _keep(self, w: BlobWriter, media_type: MediaType | str) -> Descriptor:
        if w.digest not in self._pending:
            self._pending[w.digest] = (w, media_type)
        return Descriptor(media_type, w.digest, w.size)

    def document(self, data: bytes, media_type: MediaType | str) -> Descriptor:
        w = self._writer()
        w.write(data)
        return self._keep(w, media_type)

    def layer(
        self,
        stream: BinaryIO,
        diff_id: Digest,
        what: str,
        expect: Descriptor | None = None,
    ) -> Descriptor:
        """Stream a layer in; check its digest (if `expect`) and its tar against `diff_id`."""
        from builder.layer.compression import open_decompressed, sniff

        if expect is not None and expect.digest in self._pending:
            if self._diff_ids.get(expect.digest) != diff_id:
                raise _bad(self._label, f"{what}: named with two different diff_ids")
            return expect  # the same bytes, read and checked already
        w = self._writer()
        tee = _Tee(stream, w)
        tar_hash = diff_id.hasher()
        try:
            with open_decompressed(cast(BinaryIO, tee)) as plain:
                while chunk := plain.read(_CHUNK):
                    tar_hash.update(chunk)
        except LayerError as err:
            while tee.read(_CHUNK):  # a blob that is not its digest says so first
                pass
            if expect is not None:
                self._check(w, expect, what)
            raise _bad(self._label, f"{what}: {err}") from None
        while tee.read(_CHUNK):  # bytes after the compressed stream are part of the blob
            pass
        if expect is not None:
            self._check(w, expect, what)
        got = Digest.from_hash(tar_hash)
        if got != diff_id:
            raise _bad(self._label, f"{what}: its tar is {got}, its config says {diff_id}")
        self._diff_ids[w.digest] = diff_id
        if expect is not None:
            return self._keep(w, expect.media_type)
        return self._keep(w, MediaType.for_layer(sniff(tee.head)))

    def blob(self, stream: BinaryIO, expect: Descriptor, what: str) -> Descriptor:
        w = self._writer()
        while chunk := stream.read(_CHUNK):
            w.write(chunk)
        self._check(w, expect, what)
        return self._keep(w, expect.media_type)

    def _check(self, w: BlobWriter, expect: Descriptor, what: str) -> None:
        if w.digest != expect.digest:
            raise _bad(self._label, f"{what}: content is {w.digest}, not {expect.digest}")
        if w.size != expect.size:
            raise _bad(self._label, f"{what}: {w.size} bytes, its descriptor says {expect.size}")

    def commit(self) -> None:
        for w, kind in self._pending.values():
            w.commit(kind)


def _config(archive: _Archive, data: bytes, what: str) -> ImageConfig:
    try:
        return ImageConfig.from_json(json.loads(data))
    except (ValueError, FormatError) as err:
        raise _bad(archive.label, f"{what}: not an image config: {err}") from None


def _blob_name(d: Descriptor) -> str:
    return f"blobs/{d.digest.algorithm}/{d.digest.hex}"


def _ref(text: str, archive: _Archive) -> str:
    try:
        return str(Reference.parse(text))
    except UsageError as err:
        raise _bad(archive.label, f"the archive names an image {text!r}: {err}") from None


def _oci_names(d: Descriptor, archive: _Archive) -> tuple[str, ...]:
    """The name an index entry gives: containerd's full name, else a ref.name that is a
    full name (skopeo writes `busybox:latest` there); a bare tag (`v1`) names no image."""
    annotations = d.annotations or {}
    full = annotations.get(CONTAINERD_NAME)
    if full:
        return (_ref(full, archive),)
    ref = annotations.get(OCI_REF_NAME)
    if ref and (":" in ref or "/" in ref or "@" in ref):
        return (_ref(ref, archive),)
    return ()


def _pick_platform(index: Index, archive: _Archive) -> Descriptor:
    host = Platform.host()
    for d in index.manifests:
        p = d.platform
        if (
            p is not None
            and (p.os, p.architecture) == (host.os, host.architecture)
            and p.variant in (None, host.variant)
        ):
            return d
    raise _bad(archive.label, f"its image index has no image for this platform ({host})")


def _load_oci(archive: _Archive, staging: _Staging) -> list[Loaded]:
    what = "index.json"
    try:
        index = Index.from_json(archive.json("index.json"))
    except FormatError as err:
        raise _bad(archive.label, f"index.json: {err}") from None
    loaded = []
    for entry in index.manifests:
        names = _oci_names(entry, archive)
        desc = entry
        try:
            kind = media_type(str(desc.media_type))
            if isinstance(kind, MediaType) and kind.is_index:
                data = archive.document(_blob_name(desc), desc.size)
                _verify_bytes(data, desc, archive)
                desc = _pick_platform(Index.from_json(json.loads(data)), archive)
            what = f"manifest {desc.digest}"
            data = archive.document(_blob_name(desc), desc.size)
            _verify_bytes(data, desc, archive)
            manifest = Manifest.from_json(json.loads(data))
        except (ValueError, FormatError) as err:
            raise _bad(archive.label, f"{what}: {err}") from None
        config_data = archive.document(_blob_name(manifest.config), manifest.config.size)
        _verify_bytes(config_data, manifest.config, archive)
        config = _config(archive, config_data, f"config {manifest.config.digest}")
        if len(config.diff_ids) != len(manifest.layers):
            raise _bad(archive.label, f"{what}: its layers and its config's diff_ids disagree")
        staging.document(config_data, manifest.config.media_type)
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            with archive.open(archive.regular(_blob_name(layer))) as stream:
                staging.layer(stream, diff_id, f"layer {layer.digest}", expect=layer)
        stored = staging.document(data, desc.media_type)
        platform = Platform(config.architecture, config.os, config.variant)
        descriptor = Descriptor(stored.media_type, stored.digest, stored.size, platform=platform)
        loaded.append(Loaded(descriptor, names))
    return loaded


def _verify_bytes(data: bytes, d: Descriptor, archive: _Archive) -> None:
    got = Digest.of_bytes(data, d.digest.algorithm)
    if got != d.digest:
        raise _bad(archive.label, f"blob {d.digest}: content is {got}")


def _load_docker(archive: _Archive, staging: _Staging) -> list[Loaded]:
    entries = archive.json("manifest.json")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _bad(archive.label, "manifest.json: expected a list of images")
    loaded = []
    for number, entry in enumerate(entries, 1):
        what = f"manifest.json image {number}"
        config_name, layers, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags")
        if not isinstance(config_name, str) or not isinstance(layers, list):
            raise _bad(archive.label, f"{what}: needs Config and Layers")
        if not all(isinstance(name, str) for name in layers):
            raise _bad(archive.label, f"{what}: Layers must be file names")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(t, str) for t in tags)
        ):
            raise _bad(archive.label, f"{what}: RepoTags must be a list of names")
        config_data = archive.document(config_name)
        config = _config(archive, config_data, f"{what}: {config_name}")
        if len(config.diff_ids) != len(layers):
            raise _bad(
                archive.label,
                f"{what}: {len(layers)} layers, but its config lists {len(config.diff_ids)}",
            )
        config_desc = staging.document(config_data, MediaType.OCI_CONFIG)
        descriptors = []
        for name, diff_id in zip(layers, config.diff_ids, strict=True):
            with archive.open(archive.regular(name, follow=True)) as stream:
                descriptors.append(staging.layer(stream, diff_id, f"{what}: layer {name}"))
        manifest = Manifest(config_desc, tuple(descriptors))
        from builder.image.canonical import canonical_json

        stored = staging.document(canonical_json(manifest.to_json()), MediaType.OCI_MANIFEST)
        platform = Platform(config.architecture, config.os, config.variant)
        descriptor = Descriptor(stored.media_type, stored.digest, stored.size, platform=platform)
        loaded.append(Loaded(descriptor, tuple(_ref(t, archive) for t in tags or ())))
    return loaded


@contextlib.contextmanager
def _plain_tar(source: Path, tmp: Path) -> Iterator[BinaryIO]:
    """The archive as a plain, seekable tar: a compressed one (or a pipe) is copied into a
    temp file in the store first, decompressed."""
    from builder.layer.compression import open_decompressed, sniff_format

    try:
        f = open(source, "rb")  # noqa: SIM115  # closed below
    except OSError as err:
        raise UsageError(f"{source}: {err.strerror}") from None
    with f:
        head = f.peek(6)[:6] if isinstance(f, io.BufferedReader) else b""
        kind = sniff_format(head)
        if kind is None and f.seekable():
            yield f
            return
        if kind not in (None, "gzip", "zstd"):
            raise _bad(str(source), f"a {kind} archive: give a plain, gzip or zstd tar")
        with tempfile.TemporaryFile(dir=tmp) as plain:
            shutil.copyfileobj(open_decompressed(f), plain, _CHUNK)
            plain.seek(0)
            yield plain


def load_archive(store: Store, source: Path) -> list[Loaded]:
    """Load every image of the archive at `source`; tag each with the names it carries.

    An image without a name is still kept (index.json lists it, unnamed), as `docker load`
    keeps one: it is reachable by its digest."""
    label = str(source)
    with (
        store.lease(),
        _plain_tar(source, store.paths.tmp) as f,
        contextlib.ExitStack() as stack,
    ):
        archive = _Archive(f, label)
        staging = _Staging(store, stack, label)
        if archive.has("index.json") and archive.has("oci-layout"):
            loaded = _load_oci(archive, staging)
        elif archive.has("manifest.json"):
            loaded = _load_docker(archive, staging)
        else:
            raise _bad(label, "neither an OCI archive (index.json) nor a docker archive")
        if not loaded:
            raise _bad(label, "the archive holds no image")
        staging.commit()
        for image in loaded:
            if image.names:
                for name in image.names:
                    store.layout.tag(name, image.descriptor)
            else:
                store.layout.keep(image.descriptor)
        for image in loaded:  # unpacked at once, as docker load does (store.unpacked)
            store.unpacked(store.image(image.descriptor))
    return loaded
