"""Pull: an image from a registry into the store, exactly as the registry serves it.

The mirrors the settings name for the registry are tried first, then the registry itself.
An index (or manifest list) is resolved to this machine's platform. The manifest's bytes
and digest are kept as they are (Docker schema 2 media types too), the config and the
layers are streamed in verified, up to three layers at once, and only then is the name
tagged. A pull that fails removes the blobs it added: the store is left as it was found.
Layers are unpacked on first use, as for any image.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from builder.errors import ImageNotFound, RegistryError
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.image import Image
from builder.image.manifest import Index, Manifest
from builder.image.mediatypes import MediaType, media_type
from builder.image.reference import Reference
from builder.registry.client import Fetched, Registry, Repository
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
from builder.registry.platforms import select
from builder.registry.settings import Settings, load_settings
from builder.registry.transport import RetryPolicy
from builder.store import Store

PARALLEL = 3  # layers moving at once
T = TypeVar("T")


def pull(
    store: Store,
    name: str,
    *,
    settings: Settings | None = None,
    report: TransferReporter = ignore,
    policy: RetryPolicy | None = None,
    platform: Platform | None = None,
) -> Image:
    """Pull NAME (a reference as docker spells it) and tag it in the store under its
    familiar name ("busybox" -> "busybox:latest"); returns the stored image.

    ImageNotFound when no registry has it; RegistryError for everything else that fails."""
    return _from_first_host(store, name, settings, report, policy, platform, _Pull.run)


def resolve(
    store: Store,
    name: str,
    *,
    settings: Settings | None = None,
    report: TransferReporter = ignore,
    policy: RetryPolicy | None = None,
    platform: Platform | None = None,
) -> PendingImage:
    """NAME's manifest and config only, from the first host that has it (mirrors first):
    enough for a build to know the image's config, diff IDs and cache keys. Its layers
    move, and its name is tagged, only when `complete()` is called, so the store never
    names an image it does not hold whole. Errors as for `pull`."""
    return _from_first_host(store, name, settings, report, policy, platform, _Pull.pending)


def _from_first_host(
    store: Store,
    name: str,
    settings: Settings | None,
    report: TransferReporter,
    policy: RetryPolicy | None,
    platform: Platform | None,
    action: Callable[[_Pull], T],
) -> T:
    ref = Reference.parse(name)
    settings = settings or load_settings()
    report = serialized(report)
    mirrors = settings.for_host(ref.registry).mirrors
    failed: list[str] = []
    for host in (*mirrors, ref.registry):
        try:
            return action(_Pull(store, ref, Registry(host, settings, policy), report, platform))
        except (RegistryError, ImageNotFound) as err:
            if host == ref.registry:
                if failed:
                    note = (
                        f" (mirror{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed too)"
                    )
                    raise type(err)(f"{err}{note}") from None
                raise
            failed.append(host)
    raise AssertionError("unreachable")  # pragma: no cover


class _Pull:
    def __init__(
        self,
        store: Store,
        ref: Reference,
        registry: Registry,
        report: TransferReporter,
        platform: Platform | None,
    ) -> None:
        self.store = store
        self.ref = ref
        self.repo: Repository = registry.repository(ref.repository)
        self.report = report
        self.platform = platform or Platform.host()
        self.written: list[Digest] = []  # blobs this pull added (removed again if it fails)

    def run(self) -> Image:
        started = self._announce()
        fetched, manifest = self._head()
        with self.store.lease():  # gc must not sweep blobs this pull has not tagged yet
            with self._taking_back():
                image = self._config(fetched, manifest)
            self._finish(fetched, manifest, image, started)
        return image

    def pending(self) -> PendingImage:
        fetched, manifest = self._head()
        with self._taking_back():
            image = self._config(fetched, manifest)
        # The config stays while the layers wait: the build reads it. Were the build never to
        # need the layers, it is an unnamed blob for gc, as BuildKit leaves its metadata.
        self.written.clear()
        return PendingImage(self, fetched, manifest, image)

    def _announce(self) -> float:
        self.report(TransferStarted("pull", str(self.ref), self.repo.registry.host))
        return time.monotonic()

    def _head(self) -> tuple[Fetched, Manifest]:
        fetched = self._manifest()
        manifest = _parse(Manifest.from_json, fetched, str(self.ref))
        _check_image(manifest, str(self.ref))
        return fetched, manifest

    def _finish(self, fetched: Fetched, manifest: Manifest, image: Image, started: float) -> None:
        """The layers, then the manifest, then the name. The caller holds a lease."""
        name = str(self.ref)
        with self._taking_back():
            self._layers(manifest)
            self._keep_manifest(fetched)
            if self._stored() != image.descriptor:
                self.store.layout.tag(name, image.descriptor)
        self.report(TransferDone("pull", name, str(image.digest), time.monotonic() - started))

    @contextlib.contextmanager
    def _taking_back(self) -> Iterator[None]:
        """On failure, the blobs this pull added are removed: the store is left as found."""
        try:
            yield
        except BaseException:
            for digest in self.written:
                self.store.layout.delete(digest)
            self.written.clear()
            raise

    def _manifest(self) -> Fetched:
        """The image manifest for this platform (through the index, if the name is one)."""
        reference = str(self.ref.digest) if self.ref.digest else str(self.ref.tag)
        fetched = self.repo.manifest(reference)
        kind = media_type(fetched.media_type)
        if isinstance(kind, MediaType) and kind.is_index:
            index = _parse(Index.from_json, fetched, str(self.ref))
            chosen = select(index, self.platform, str(self.ref))
            fetched = self.repo.manifest(str(chosen.digest))
            kind = media_type(fetched.media_type)
        if not (isinstance(kind, MediaType) and kind.is_manifest):
            raise RegistryError(
                f"{self.ref} is not a container image (its manifest is {fetched.media_type})"
            )
        return fetched

    def _stored(self) -> Descriptor | None:
        try:
            return self.store.layout.resolve(str(self.ref)).with_annotations(None)
        except ImageNotFound:
            return None

    def _config(self, fetched: Fetched, manifest: Manifest) -> Image:
        """The config is fetched (and checked) before any layer moves."""
        self._fetch(manifest.config, "config")
        try:
            config = ImageConfig.from_json(
                json.loads(self.store.layout.read(manifest.config.digest))
            )
            platform = Platform(config.architecture, config.os, config.variant)
            desc = Descriptor(fetched.media_type, fetched.digest, len(fetched.data), None, platform)
            return Image(desc, manifest, config)
        except (ValueError, FormatError) as err:
            raise RegistryError(f"{self.ref}: the image config is malformed: {err}") from None

    def _layers(self, manifest: Manifest) -> None:
        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="pull") as pool:
            futures = [pool.submit(self._fetch, layer, "layer") for layer in manifest.layers]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise

    def _fetch(self, blob: Descriptor, kind: str) -> None:
        started = time.monotonic()
        self.report(BlobStarted("pull", str(blob.digest), blob.size, kind))
        if self.store.layout.has(blob.digest):
            how = "present"
        else:
            self.repo.download(blob, self.store.layout, self._progress(blob))
            self.written.append(blob.digest)
            how = "downloaded"
        seconds = time.monotonic() - started
        self.report(BlobDone("pull", str(blob.digest), blob.size, kind, how, seconds))

    def _progress(self, blob: Descriptor) -> Callable[[int], None]:
        def progress(done: int) -> None:
            self.report(BlobProgress(str(blob.digest), done, blob.size))

        return progress

    def _keep_manifest(self, fetched: Fetched) -> None:
        if self.store.layout.has(fetched.digest):
            return
        with self.store.layout.writer() as writer:
            writer.write(fetched.data)
            if writer.digest != fetched.digest:  # verified when fetched; this is the store
                raise RegistryError(f"{self.ref}: the manifest changed while it was stored")
            writer.commit(fetched.media_type)
        self.written.append(fetched.digest)


class PendingImage:
    """An image whose manifest and config are known and whose layers are still in the
    registry (see `resolve`)."""

    def __init__(self, pull: _Pull, fetched: Fetched, manifest: Manifest, image: Image) -> None:
        self._pull = pull
        self._fetched = fetched
        self._manifest = manifest
        self._lock = threading.Lock()
        self._done = False
        self.image = image

    def complete(self) -> None:
        """Bring every layer into the store (three at once, verified) and name the image
        there, as `pull` does; once. A failure takes back what it added and may be retried."""
        with self._lock:
            if self._done:
                return
            pull = self._pull
            started = pull._announce()
            with pull.store.lease():
                with pull._taking_back():  # gone if gc ran between resolve and now
                    pull._fetch(self._manifest.config, "config")
                pull._finish(self._fetched, self._manifest, self.image, started)
            self._done = True


def _parse(parse: Callable[[object], T], fetched: Fetched, name: str) -> T:
    try:
        return parse(json.loads(fetched.data))
    except (ValueError, FormatError) as err:
        raise RegistryError(f"{name}: the registry sent a malformed manifest: {err}") from None


def _check_image(manifest: Manifest, name: str) -> None:
    """Only container images are pulled: an artifact (a Helm chart, a signature) is not
    something a FROM can start from."""
    config = media_type(str(manifest.config.media_type))
    if not (isinstance(config, MediaType) and config.is_config):
        raise RegistryError(
            f"{name} is not a container image (its config is {manifest.config.media_type})"
        )
    for layer in manifest.layers:
        kind = media_type(str(layer.media_type))
        if not (isinstance(kind, MediaType) and kind.is_layer):
            raise RegistryError(f"{name} is not a container image (a layer is {layer.media_type})")
