"""Which manifest of an index (or manifest list) this machine runs: containerd's choice.

Platforms are compared normalized (builder.image.platform: "aarch64" is "arm64", arm64's
"v8" is no variant). The exact variant wins; an arm host also runs older arm variants (v7
runs v6 and v5), best first. Entries for no platform ("unknown/unknown": BuildKit's
attestations) are never chosen.
"""

from __future__ import annotations

from builder.errors import RegistryError
from builder.image.descriptor import Descriptor, Platform
from builder.image.manifest import Index

_ARM_ORDER = ("v8", "v7", "v6", "v5")


def normalized(platform: Platform) -> Platform:
    text = "/".join(p for p in (platform.os, platform.architecture, platform.variant) if p)
    try:
        return Platform.parse(text)
    except ValueError:
        return platform


def _rank(want: Platform, have: Platform) -> int | None:
    """0 for the exact platform, n > 0 for the n-th best compatible one, None for no match."""
    if (have.os, have.architecture) != (want.os, want.architecture):
        return None
    if have.variant == want.variant:
        return 0
    if want.architecture == "arm" and want.variant in _ARM_ORDER and have.variant in _ARM_ORDER:
        distance = _ARM_ORDER.index(have.variant) - _ARM_ORDER.index(want.variant)
        return distance if distance > 0 else None
    return None


def select(index: Index, want: Platform, what: str) -> Descriptor:
    """The manifest of `index` for `want`; RegistryError naming what there is, if none."""
    target = normalized(want)
    ranked: list[tuple[int, int, Descriptor]] = []
    for position, desc in enumerate(index.manifests):
        if desc.platform is None:
            continue
        rank = _rank(target, normalized(desc.platform))
        if rank is not None:
            ranked.append((rank, position, desc))
    if ranked:
        return min(ranked, key=lambda r: (r[0], r[1]))[2]
    offered = sorted(
        {
            str(normalized(d.platform))
            for d in index.manifests
            if d.platform is not None and d.platform.os != "unknown"
        }
    )
    return_text = ", ".join(offered) if offered else "no platform at all"
    raise RegistryError(f"{what} has no image for {target} (it has {return_text})")
