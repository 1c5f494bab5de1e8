"""Build caches beyond the local store: imported ones (--cache-from), exported ones (--cache-to).

The engine knows them only through the protocols here; the CLI makes them (a directory, a
registry) and hands them in through BuildOptions, so the engine never imports a transport.

A step looks in the local cache first, then in each imported cache in order. A hit from an
imported cache is used as a local one would be, without its layer's blob: the blob is
fetched only when something needs its bytes, i.e. when the layer is in the image the build
writes, or is a lower of a step that runs. The hit is written into the local cache too, so a
later build finds it there.

An imported cache that cannot be used (unreadable, malformed, a blob missing or not matching
its digest) is ignored with a warning, as BuildKit ignores one: found when it is opened, the
build goes on without it; found when a blob is fetched, the build starts again without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from builder.engine.images import PendingImage
from builder.errors import BuilderError, RegistryError, StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.record import dataclass
from builder.store import StepRecord, Store


class RemoteCache(Protocol):
    """An opened imported cache: its records, and its blobs on demand."""

    def record(self, key: str) -> StepRecord | None: ...

    def fetch(self, layer: Descriptor) -> None:
        """Bring the blob into the store it was opened for, verified (else a BuilderError)."""
        ...


class CacheSource(Protocol):
    """--cache-from: where a cache is read from."""

    @property
    def where(self) -> str: ...  # for messages: "type=local,src=DIR", "REF"

    def open(self, store: Store) -> RemoteCache:
        """Read the cache's records (not its layers); a BuilderError if it cannot be used."""
        ...


class CacheTarget(Protocol):
    """--cache-to: where this build's cache is written."""

    @property
    def where(self) -> str: ...

    @property
    def mode(self) -> str: ...  # "min": the target stage's steps; "max": every stage's

    def export(
        self,
        store: Store,
        records: Mapping[str, StepRecord],
        fetch: Callable[[Descriptor], None],
    ) -> None:
        """Write the records and their blobs; `fetch` brings into the store a blob that a
        record imported from elsewhere names and that the store does not have yet."""
        ...


class CacheUnusable(Exception):  # internal: not an error the user sees
    """An imported cache failed while a blob was fetched: the build starts again without it.
    Not a BuilderError, so no handler on the way mistakes it for a step's failure."""

    def __init__(self, source: int, where: str, cause: BuilderError) -> None:
        super().__init__(f"{where}: {cause}")
        self.source = source
        self.where = where
        self.cause = cause


@dataclass(frozen=True)
class _Origin:
    source: int  # its index among the opened caches
    diff_id: Digest | None


class CacheLink:
    """One build's cache lookups, and the records it used or made, by stage."""

    def __init__(self, store: Store, remotes: Sequence[tuple[str, RemoteCache]] = ()) -> None:
        self._store = store
        self._remotes = list(remotes)
        self._origin: dict[Digest, _Origin] = {}
        self._by_stage: dict[int, dict[str, StepRecord]] = {}
        self._bases: dict[Digest, PendingImage] = {}  # a resolved base's layers, by blob
        self._current = threading.local()  # stages may run at once, one per thread

    @property
    def stage(self) -> int:
        """The stage whose steps run now on this thread (the engine sets it)."""
        stage: int = getattr(self._current, "stage", 0)
        return stage

    @stage.setter
    def stage(self, index: int) -> None:
        self._current.stage = index

    def lookup(self, key: str) -> StepRecord | None:
        """The record of a step: the local cache's (if its blob is still there), else the
        first imported cache's that has one."""
        local = self._store.cache.get(key, StepRecord)
        if local is not None and (
            local.layer is None or self._store.layout.has(local.layer.digest)
        ):
            return local
        for index, (_where, remote) in enumerate(self._remotes):
            record = remote.record(key)
            if record is None:
                continue
            if record.layer is not None and not self._store.layout.has(record.layer.digest):
                self._origin[record.layer.digest] = _Origin(index, record.diff_id)
            self._store.cache.put(key, record)
            return record
        return None

    def note(self, key: str, record: StepRecord) -> None:
        """A record this build used or made, for --cache-to."""
        self._by_stage.setdefault(self.stage, {})[key] = record

    def add_base(self, base: PendingImage) -> None:
        """A base image whose layers are still in its registry (engine/images): the first
        of them needed brings them all, and names the image in the store."""
        for layer in base.image.manifest.layers:
            self._bases.setdefault(layer.digest, base)

    @property
    def defers_bases(self) -> bool:
        """Whether a missing base is worth resolving rather than pulling: only an imported
        cache can spare its layers."""
        return bool(self._remotes)

    def need(self, layer: Descriptor) -> None:
        """Make sure the store has the blob: fetch it from the imported cache whose record
        named it, or complete the base image it belongs to. A blob neither named is left
        for the store to report."""
        if self._store.layout.has(layer.digest):
            return
        base = self._bases.get(layer.digest)
        if base is not None:
            base.complete()
            if self._store.layout.has(layer.digest):
                return
        origin = self._origin.get(layer.digest)
        if origin is None:
            return
        where, remote = self._remotes[origin.source]
        try:
            remote.fetch(layer)
        except BuilderError as err:
            raise CacheUnusable(origin.source, where, err) from err
        if origin.diff_id is not None:  # as a pull does: its level is not known
            self._store.variants.record(origin.diff_id, layer, None)

    def records(self, stages: Iterable[int] | None = None) -> dict[str, StepRecord]:
        """The records of the given stages (all when None), in the order they were noted."""
        chosen = (
            self._by_stage if stages is None else {s: self._by_stage.get(s, {}) for s in stages}
        )
        out: dict[str, StepRecord] = {}
        for records in chosen.values():
            out.update(records)
        return out

    def without(self, source: int) -> list[tuple[str, RemoteCache]]:
        """The opened caches but one (the one that failed)."""
        return [remote for i, remote in enumerate(self._remotes) if i != source]


def open_sources(
    sources: Sequence[CacheSource], store: Store, warn: Callable[[str], None]
) -> list[tuple[str, RemoteCache]]:
    """Each source opened; one that cannot be is left out with a warning."""
    opened = []
    for source in sources:
        try:
            opened.append((source.where, source.open(store)))
        except BuilderError as err:
            warn(f"cache import {source.where} is not used: {err}")
    return opened


def export_all(
    targets: Sequence[CacheTarget], store: Store, link: CacheLink, target_stages: Iterable[int]
) -> None:
    """Write the build's cache to each target: the target stage's records (mode=min, as
    BuildKit's min: the steps whose layers the image has) or every stage's (mode=max)."""
    chain = tuple(target_stages)
    for target in targets:
        records = link.records(None if target.mode == "max" else chain)
        try:
            target.export(store, records, link.need)
        except CacheUnusable as err:  # the build is done: a blob it needs is not to be had
            kind = RegistryError if isinstance(err.cause, RegistryError) else StoreError
            raise kind(f"cache export to {target.where}: {err}") from None
