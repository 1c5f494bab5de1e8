"""The value a stage carries from step to step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.image import Image
from builder.record import dataclass, field, replace

if TYPE_CHECKING:
    from builder.engine.pending import PendingLayer

# The time of a state with nothing dated yet (scratch, or an image without `created`).
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class ImageState:
    config: ImageConfig
    layers: tuple[Descriptor, ...]  # compressed blobs, parallel to config's diff_ids
    key: str  # the cache-key chain up to here
    created: str  # RFC 3339 time of the newest step; metadata steps reuse it (deterministic)
    from_cache: bool = True  # the last step that did any work reused a cached result
    cmd_set_in_stage: bool = False  # ENTRYPOINT clears an inherited CMD, not one set here
    # A step before it missed while its stage was only probed for its keys (engine: lazy
    # stages): the key chain is right, the layers are not there.
    unresolved: bool = False
    # A RUN's layer still being written (engine/pending): its history entry is in
    # `config`, its diff ID and blob are not yet; `pending.settle` appends them.
    pending: PendingLayer | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_image(cls, image: Image) -> ImageState:
        """A stored image as a stage starts from it (FROM) or copies out of it (COPY --from);
        its cache chain starts at its manifest digest."""
        return cls(
            config=image.config,
            layers=image.manifest.layers,
            key=f"image:{image.digest}",
            created=image.config.created or EPOCH,
        )

    def step(
        self,
        config: ImageConfig,
        key: str,
        *,
        created: str | None = None,
        layer: Descriptor | None = None,
        cached: bool | None = None,
    ) -> ImageState:
        """The state after one more step; `cached` is None for config-only steps, which
        count as cached exactly when the step before them was."""
        return replace(
            self,
            config=config,
            layers=self.layers + ((layer,) if layer is not None else ()),
            key=key,
            created=created or self.created,
            from_cache=self.from_cache if cached is None else cached,
        )
