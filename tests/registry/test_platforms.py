"""Choosing this machine's manifest from an index, as containerd does."""

from __future__ import annotations

import pytest

from builder.errors import RegistryError
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Index
from builder.image.mediatypes import MediaType
from builder.registry.platforms import select


def _index(*platforms: str | None) -> Index:
    manifests = []
    for n, text in enumerate(platforms):
        platform = None
        if text is not None:
            os, arch, *variant = text.split("/")
            platform = Platform(arch, os, variant[0] if variant else None)
        digest = Digest.from_hex(f"{n:064x}")
        manifests.append(Descriptor(MediaType.OCI_MANIFEST, digest, 100, None, platform))
    return Index(tuple(manifests))


def _chosen(index: Index, host: str) -> int:
    os, arch, *variant = host.split("/")
    desc = select(index, Platform(arch, os, variant[0] if variant else None), "img")
    return index.manifests.index(desc)


def test_the_exact_platform_wins() -> None:
    index = _index("linux/arm/v7", "linux/amd64", "linux/arm64")
    assert _chosen(index, "linux/amd64") == 1
    assert _chosen(index, "linux/arm64") == 2


def test_spellings_are_normalized_on_both_sides() -> None:
    index = _index("linux/s390x", "linux/aarch64/v8")
    assert _chosen(index, "linux/arm64") == 1


def test_an_arm_host_takes_the_nearest_older_variant() -> None:
    index = _index("linux/arm/v5", "linux/arm/v6", "linux/arm64")
    assert _chosen(index, "linux/arm/v7") == 1
    assert _chosen(index, "linux/arm/v5") == 0


def test_a_newer_variant_is_not_taken() -> None:
    with pytest.raises(RegistryError):
        select(_index("linux/arm/v7"), Platform("arm", "linux", "v6"), "img")


def test_a_missing_platform_names_what_there_is() -> None:
    # BuildKit's attestation manifests ("unknown/unknown") are neither taken nor offered.
    index = _index("linux/arm64", "unknown/unknown", None, "linux/arm/v7")
    with pytest.raises(RegistryError) as caught:
        select(index, Platform("amd64", "linux"), "busybox:latest")
    assert str(caught.value) == (
        "busybox:latest has no image for linux/amd64 (it has linux/arm/v7, linux/arm64)"
    )
