"""Push: an image of the store to a registry, its manifest byte for byte.

Every blob goes up first (the config and up to three layers at once; each skipped when the
repository has it, mounted when another repository of that registry has it), the manifest
last, so the registry never names an image whose blobs it lacks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from builder.errors import ImageNotFound, StoreError, UsageError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.reference import Reference
from builder.registry.client import Registry
from builder.registry.events import (
    BlobDone,
    BlobProgress,
    BlobStarted,
    TransferDone,
    TransferReporter,
    TransferStarted,
    ignore,
    serialized,
)
from builder.registry.settings import Settings, load_settings
from builder.registry.transport import RetryPolicy
from builder.registry.upload import CHUNK_SIZE, upload_blob
from builder.store import Store

PARALLEL = 3  # blobs moving at once


def push(
    store: Store,
    name: str | Descriptor,
    target: str | None = None,
    *,
    settings: Settings | None = None,
    report: TransferReporter = ignore,
    policy: RetryPolicy | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Digest:
    """Push the image NAME names (or the stored manifest a descriptor points at, which needs
    no name in index.json: a build's untagged result), as TARGET (default: NAME itself);
    returns the manifest's digest, which is the one the store has."""
    image = store.image(name)
    if target is None and not isinstance(name, str):
        raise UsageError(f"pushing {name.digest} needs a name to push it as")
    ref = Reference.parse(target or str(name))
    if ref.digest is not None and ref.digest != image.digest:
        raise UsageError(f"cannot push {name} as {ref}: its manifest digest is {image.digest}")
    settings = settings or load_settings()
    report = serialized(report)
    started = time.monotonic()
    repo = Registry(ref.registry, settings, policy).repository(ref.repository)
    report(TransferStarted("push", str(ref), ref.registry))
    sources = mount_sources(store, ref.registry)

    def send(blob: Descriptor, kind: str) -> None:
        t0 = time.monotonic()
        report(BlobStarted("push", str(blob.digest), blob.size, kind))

        def progress(done: int) -> None:
            report(BlobProgress(str(blob.digest), done, blob.size))

        how = upload_blob(
            repo, blob, store.layout, sources.get(blob.digest, ()), progress, chunk_size
        )
        report(BlobDone("push", str(blob.digest), blob.size, kind, how, time.monotonic() - t0))

    with store.lease():  # gc must not sweep what is being read
        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="push") as pool:
            futures = [pool.submit(send, image.manifest.config, "config")]
            futures += [pool.submit(send, layer, "layer") for layer in image.manifest.layers]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        data = store.layout.read(image.digest)
    reference = ref.tag if ref.tag is not None else str(ref.digest)
    digest = repo.put_manifest(reference, data, str(image.descriptor.media_type))
    report(TransferDone("push", str(ref), str(digest), time.monotonic() - started))
    return digest


def mount_sources(store: Store, registry: str) -> Mapping[Digest, tuple[str, ...]]:
    """For each blob, the repositories of REGISTRY that images in the store are named after
    and that hold it: where a push can mount it from instead of sending it."""
    found: dict[Digest, list[str]] = {}
    for name, desc in store.layout.refs():
        try:
            ref = Reference.parse(name)
            if ref.registry != registry:
                continue
            image = store.image(desc)
        except (UsageError, ImageNotFound, StoreError):
            continue  # a name or image we cannot read offers nothing to mount
        for blob in (image.manifest.config, *image.manifest.layers):
            repos = found.setdefault(blob.digest, [])
            if ref.repository not in repos:
                repos.append(ref.repository)
    return {digest: tuple(repos) for digest, repos in found.items()}
