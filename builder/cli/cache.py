"""build --cache-to / --cache-from, as buildx spells them: a CSV of key=value.

  --cache-to   type=local,dest=DIR[,mode=min|max][,tag=T]   type=registry,ref=REF[,mode=...]
  --cache-from type=local,src=DIR[,tag=T]                   type=registry,ref=REF   REF

`--cache-from REF` alone is type=registry,ref=REF, as buildx reads it. An unknown type or
key is a usage error naming it. The result is what BuildOptions takes (store/cache_sync.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli.attrs import parse_attrs
from builder.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from builder.registry.events import TransferReporter
    from builder.store.cache_sync import CacheExport, CacheImport
    from builder.store.cache_transport import CacheTransport

_KEYS = {
    ("to", "local"): {"dest", "mode", "tag"},
    ("to", "registry"): {"ref", "mode"},
    ("from", "local"): {"src", "tag"},
    ("from", "registry"): {"ref"},
}
# buildx keys that say what our cache always is: accepted when they ask for that.
_ALWAYS = {"image-manifest": "true", "oci-mediatypes": "true"}


def options(function: click.decorators.FC) -> click.decorators.FC:
    function = click.option(
        "--cache-from",
        "cache_from",
        multiple=True,
        help="Use a shared build cache (repeatable): type=registry,ref=REF (or just REF) or"
        " type=local,src=DIR.",
    )(function)
    return click.option(
        "--cache-to",
        "cache_to",
        multiple=True,
        help="Export the build cache (repeatable): type=registry,ref=REF or"
        " type=local,dest=DIR; mode=min (the image's steps, the default) or mode=max (every"
        " stage's).",
    )(function)


def _checked(flag: str, direction: str, attrs: dict[str, str]) -> tuple[str, dict[str, str]]:
    kind = attrs.pop("type", None)
    if kind is None:
        raise UsageError(f"{flag}: type= is missing (type=registry or type=local)")
    allowed = _KEYS.get((direction, kind))
    if allowed is None:
        raise UsageError(f"{flag}: unknown cache type {kind!r} (use registry or local)")
    for key, val in attrs.items():
        if key in _ALWAYS and val.lower() == _ALWAYS[key]:
            continue
        if key not in allowed:
            raise UsageError(f"{flag} type={kind}: unknown key {key!r}")
    required = "ref" if kind == "registry" else "dest" if direction == "to" else "src"
    if not attrs.get(required):
        raise UsageError(f"{flag} type={kind}: {required}= is required")
    return kind, attrs


def _local(path: str) -> CacheTransport:
    from builder.store.cache_transport import LocalCacheDir

    return LocalCacheDir(Path(path))


def cache_imports(values: tuple[str, ...]) -> tuple[CacheImport, ...]:
    if not values:  # the usual build: cache_sync's imports are not its start-up
        return ()
    from builder.store.cache_sync import CacheImport

    out = []
    for value in values:
        attrs = (
            parse_attrs("--cache-from", value)
            if "=" in value
            else {"type": "registry", "ref": value}
        )
        kind, attrs = _checked("--cache-from", "from", attrs)
        if kind == "local":
            out.append(CacheImport(_local(attrs["src"]), attrs.get("tag") or "latest"))
        else:
            transport, reference = registry_transport(attrs["ref"])
            out.append(CacheImport(transport, reference))
    return tuple(out)


def cache_exports(
    values: tuple[str, ...], report: TransferReporter | None = None
) -> tuple[CacheExport, ...]:
    """--cache-to; a registry export reports its uploads to `report`, as a push does."""
    if not values:
        return ()
    from builder.store.cache_sync import CacheExport

    out = []
    for value in values:
        kind, attrs = _checked("--cache-to", "to", parse_attrs("--cache-to", value))
        mode = attrs.get("mode", "min")
        if mode not in ("min", "max"):
            raise UsageError(f"--cache-to: mode={mode}: use min or max")
        if kind == "local":
            out.append(CacheExport(_local(attrs["dest"]), attrs.get("tag") or "latest", mode))
        else:
            transport, reference = registry_transport(attrs["ref"], report)
            if reference.startswith("sha256:"):
                raise UsageError(f"--cache-to ref={attrs['ref']}: give a tag, not a digest")
            out.append(CacheExport(transport, reference, mode))
    return tuple(out)


def registry_transport(
    ref: str, report: TransferReporter | None = None
) -> tuple[CacheTransport, str]:
    """The cache's repository through the registry client, and its tag (or digest). The
    client is imported only here, so a build without a registry cache never loads it."""
    from builder.image.descriptor import Descriptor
    from builder.image.reference import Reference
    from builder.registry.cache_transport import RegistryCacheTransport
    from builder.registry.client import Registry
    from builder.registry.events import ignore
    from builder.registry.settings import load_settings
    from builder.registry.upload import CHUNK_SIZE, upload_blob
    from builder.store.blobs import BlobStore

    parsed = Reference.parse(ref)
    reference = str(parsed.digest) if parsed.digest is not None else parsed.tag or "latest"
    repo = Registry(parsed.registry, load_settings()).repository(parsed.repository)

    def send(blob: Descriptor, source: BlobStore, progress: Callable[[int], None]) -> str:
        return upload_blob(repo, blob, source, (), progress, CHUNK_SIZE)

    transport = RegistryCacheTransport(repo, send, report or ignore, reference)
    return transport, reference
