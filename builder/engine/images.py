"""The images a build starts from (FROM) or copies out of (COPY --from=IMAGE).

The store's, and when the caller gives a puller (the CLI wires in the registry client; the
engine never imports it), a registry's: a missing image is pulled, and with `--pull` every
named image is asked for again once per build, so a newer one is used. A digest-pinned
name that the store holds is never asked for: its content cannot have changed.
"""

from __future__ import annotations

from collections.abc import Callable

from builder.errors import ImageNotFound, UsageError
from builder.image.image import Image
from builder.image.reference import Reference
from builder.store import Store

# Pull NAME into the store and return it (ImageNotFound, RegistryError when it cannot).
Puller = Callable[[str], Image]


class ImageSource:
    def __init__(self, store: Store, puller: Puller | None, *, always_pull: bool) -> None:
        self._store = store
        self._puller = puller
        self._always_pull = always_pull
        self._pulled: dict[str, Image] = {}

    @property
    def pulls(self) -> bool:
        """Whether a missing image is looked for in a registry."""
        return self._puller is not None

    def get(self, name: str) -> Image:
        """The image NAME names; ImageNotFound when neither the store nor a registry has it."""
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
