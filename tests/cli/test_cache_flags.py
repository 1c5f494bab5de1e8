"""--cache-to / --cache-from as buildx spells them, and the registry cache's transport over a
repository of the distribution client."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.cli.cache import cache_exports, cache_imports
from builder.errors import ImageNotFound, UsageError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.registry.cache_transport import RegistryCacheTransport
from builder.store import BlobStore, Store
from builder.store.cache_transport import LocalCacheDir

HAS_CLIENT = importlib.util.find_spec("builder.registry.client") is not None


def test_local_types_and_their_keys(tmp_path: Path) -> None:
    (export,) = cache_exports((f"type=local,dest={tmp_path}/c,mode=max,tag=ci",))
    assert isinstance(export.transport, LocalCacheDir)
    assert (export.transport.root, export.tag, export.mode) == (tmp_path / "c", "ci", "max")
    (default,) = cache_exports((f"type=local,dest={tmp_path}/c",))
    assert (default.mode, default.tag) == ("min", "latest")
    (source,) = cache_imports((f"type=local,src={tmp_path}/c",))
    assert isinstance(source.transport, LocalCacheDir) and source.tag == "latest"
    # What our cache always is, buildx's users may say: accepted.
    cache_exports((f"type=local,dest={tmp_path}/c,image-manifest=true,oci-mediatypes=true",))


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("to", "type=s3,bucket=b", "unknown cache type 's3'"),
        ("to", "dest=/x", "type= is missing"),
        ("to", "type=local,dest=/x,mode=full", "mode=full"),
        ("to", "type=local,dest=/x,colour=red", "unknown key 'colour'"),
        ("to", "type=local,dest=/x,image-manifest=false", "unknown key 'image-manifest'"),
        ("to", "type=local", "dest= is required"),
        ("to", "type=local,dest=/x,dest=/y", "dest is given twice"),
        ("to", "type=local,/x", "'/x' is not key=value"),
        ("from", "type=local,src=/x,mode=max", "unknown key 'mode'"),
        ("from", "type=registry", "ref= is required"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_culprit(flag: str, value: str, words: str) -> None:
    parse = cache_exports if flag == "to" else cache_imports
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        parse((value,))


def test_a_bare_ref_is_a_registry_cache() -> None:
    if HAS_CLIENT:
        (source,) = cache_imports(("127.0.0.1:5000/ci/cache:main",))
        assert isinstance(source.transport, RegistryCacheTransport)
        assert source.tag == "main"
    else:
        with pytest.raises(UsageError, match="type=registry is not available yet"):
            cache_imports(("127.0.0.1:5000/ci/cache:main",))


# -- the registry transport, over a repository that keeps everything in memory --------------


@dataclass
class _Fetched:
    data: bytes


@dataclass
class _Repository:
    manifests: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[Digest, bytes] = field(default_factory=dict)
    where: str = "registry.test/ci/cache"

    def manifest(self, reference: str) -> _Fetched:
        if reference not in self.manifests:
            raise ImageNotFound(f"no image {self.where}:{reference} in the registry")
        return _Fetched(self.manifests[reference])

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> Digest:
        self.manifests[reference] = data
        return Digest.of_bytes(data)

    def blob_size(self, digest: Digest) -> int | None:
        return len(self.blobs[digest]) if digest in self.blobs else None

    def download(self, blob: Descriptor, store: BlobStore, progress: Callable[[int], None]) -> None:
        with store.writer() as writer:
            writer.write(self.blobs[blob.digest])
            writer.commit(blob.media_type)

    def upload(self, blob: Descriptor, source: BlobStore, progress: Callable[[int], None]) -> str:
        self.blobs[blob.digest] = source.read(blob.digest)
        progress(blob.size)
        return "uploaded"


def test_the_registry_transport_maps_the_cache_onto_a_repository(tmp_path: Path) -> None:
    repo = _Repository()
    events: list[object] = []
    transport = RegistryCacheTransport(repo, repo.upload, events.append, "main")
    a, b = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    blob = a.layout.put(b"layer bytes", MediaType.OCI_LAYER)
    assert not transport.has_blob(blob)
    transport.put_blob(blob, a.layout)
    assert transport.has_blob(blob)
    transport.get_blob(blob, b.layout)
    assert b.layout.read(blob.digest) == b"layer bytes"
    transport.put_manifest("main", b"{}", str(MediaType.OCI_MANIFEST))
    assert transport.get_manifest("main") == b"{}"
    # Shown as a push: the transfer, the blob (started, bytes, done), the manifest's digest.
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["TransferStarted", "BlobStarted", "BlobProgress", "BlobDone", "TransferDone"]
    with pytest.raises(ImageNotFound, match=r"no cache registry\.test/ci/cache:other"):
        transport.get_manifest("other")
