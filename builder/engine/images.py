"""The images a build starts from (FROM) or copies out of (COPY --from=IMAGE).

The store's, and when the caller gives a puller (the CLI wires in the registry client; the
engine never imports it), a registry's: a missing image is pulled, and with `--pull` every
named image is asked for again once per build, so a newer one is used. A digest-pinned
name that the store holds is never asked for: its content cannot have changed.

A build that imports a cache (--cache-from) may not need a base's layers at all: every step
on it may be a cache hit whose own layer is the only one the image has. There, when the
puller can `resolve`, a missing base is taken as its manifest and config only (what its
config, diff IDs and cache keys need), and handed to `defer` (the build's CacheLink), which
completes it (its layers into the store, its name tagged) the first time a layer of it is
needed: as a lower of a step that runs, or as a layer of the image the build writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from builder.errors import ImageNotFound, UsageError
from builder.image.image import Image
from builder.image.reference import Reference
from builder.store import Store

# Pull NAME into the store and return it (ImageNotFound, RegistryError when it cannot).
Puller = Callable[[str], Image]


class PendingImage(Protocol):
    """An image known by its manifest and config, whose layers are still in a registry."""

    @property
    def image(self) -> Image: ...

    def complete(self) -> None:
        """Bring its layers into the store and name it there (RegistryError if it cannot)."""
        ...


class ImageSource:
    def __init__(
        self,
        store: Store,
        puller: Puller | None,
        *,
        always_pull: bool,
        defer: Callable[[PendingImage], None] | None = None,
    ) -> None:
        self._store = store
        self._puller = puller
        self._always_pull = always_pull
        self._defer = defer  # given: a missing base is resolved, its layers fetched on need
        self._pulled: dict[str, Image] = {}
        # Stages that run at once may name the same image: it is pulled once, not twice
        # over the same blobs (a failed pull takes back what it added).
        self._lock = threading.Lock()

    @property
    def pulls(self) -> bool:
        """Whether a missing image is looked for in a registry."""
        return self._puller is not None

    def get(self, name: str) -> Image:
        """The image NAME names; ImageNotFound when neither the store nor a registry has it."""
        with self._lock:
            return self._get(name)

    def _get(self, name: str) -> Image:
        if name in self._pulled:
            return self._pulled[name]
        if self._puller is not None and self._always_pull and self._pullable(name):
            return self._pull(name)
        try:
            return self._store.image(name)
        except ImageNotFound:
            if self._puller is None or not self._pullable(name):
                raise
        return self._pull(name)

    def _pull(self, name: str) -> Image:
        assert self._puller is not None
        resolve = getattr(self._puller, "resolve", None)  # NAME -> PendingImage, if it can
        if self._defer is not None and resolve is not None:
            pending: PendingImage = resolve(name)
            self._defer(pending)
            image = self._pulled[name] = pending.image
            return image
        image = self._pulled[name] = self._puller(name)
        return image

    def _pullable(self, name: str) -> bool:
        """A reference (not an image ID), and not a pinned digest that the store has."""
        try:
            ref = Reference.parse(name)
        except UsageError:
            return False
        if ref.digest is not None:
            try:
                self._store.image(name)
                return False
            except ImageNotFound:
                return True
        return True
