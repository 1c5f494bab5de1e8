"""Every path under a store's root, named in one place.

root/layout/{oci-layout,index.json,blobs/sha256/<hex>}   the OCI image layout
root/layers/<diff_id hex>/   unpacked layers in overlay form (lowerdirs)
root/layers.synced/<hex>     empty: that unpacked layer was on disk whole (store/layers.py)
root/cache/<key>.json        build cache records
root/variants/<diff_id hex>/<kind>[-<level>].json   a layer's blob in each compression
root/containers/<id>/        `builder run`'s writable layers (upper, work)
root/mounts/cache/<id>/      RUN --mount=type=cache directories
root/seccomp/<key>.bpf       compiled seccomp programs (sandbox/seccomp_cache.py)
root/skeleton/<version>/     mount points below every sandbox overlay (sandbox/skeleton.py)
root/tmp/                    scratch on the same filesystem, for atomic renames
root/lock                    flock: index.json updates and layer-dir renames
root/gc.lock                 flock: shared by leases (builds, runs), exclusive by gc
root/containers.lock         flock: container names are checked and taken under it
root/snapshotter.json        whether overlayfs mounts here (sandbox/snapshotter's probe)

The layout has a directory of its own because OCI tools walk and open every file under a
layout's root: an unpacked layer's whiteouts (char devices), fifos and absolute symlinks
(dangling on the host) would break or hang them. Other tools (oci-image-tool, umoci, skopeo)
read root/layout, so these names are a format: change none of them.
"""

from __future__ import annotations

from pathlib import Path

from builder.image.digest import Digest
from builder.record import dataclass


@dataclass(frozen=True)
class StorePaths:
    root: Path

    @property
    def layout(self) -> Path:
        return self.root / "layout"

    @property
    def oci_layout_file(self) -> Path:
        return self.layout / "oci-layout"

    @property
    def index(self) -> Path:
        return self.layout / "index.json"

    @property
    def blobs(self) -> Path:
        """The directory of sha256 blobs (the only algorithm the store writes)."""
        return self.layout / "blobs" / "sha256"

    def blob(self, digest: Digest) -> Path:
        return self.layout / "blobs" / digest.algorithm / digest.hex

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    def layer(self, diff_id: Digest) -> Path:
        return self.layers / diff_id.hex

    @property
    def synced_layers(self) -> Path:
        return self.root / "layers.synced"

    def synced_layer(self, diff_id: Digest) -> Path:
        return self.synced_layers / diff_id.hex

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def variants(self) -> Path:
        return self.root / "variants"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def containers_lock(self) -> Path:
        """flock: a container's name is checked and taken under it."""
        return self.root / "containers.lock"

    @property
    def cache_mounts(self) -> Path:
        return self.root / "mounts" / "cache"

    @property
    def seccomp(self) -> Path:
        """Compiled seccomp programs (sandbox/seccomp_cache.py): a cache, any file may go."""
        return self.root / "seccomp"

    @property
    def skeleton(self) -> Path:
        """The sandbox's mount points below every overlay (sandbox/skeleton.py): remade if
        gone, but never while a sandbox runs (it is a lower dir then)."""
        return self.root / "skeleton"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def gc_lock(self) -> Path:
        return self.root / "gc.lock"

    @property
    def snapshotter(self) -> Path:
        """The snapshotter probe's answer for this store, kernel and user namespace."""
        return self.root / "snapshotter.json"

    @property
    def made_before_layout(self) -> frozenset[str]:
        """What a store being created holds before its oci-layout file is written (a crash
        there leaves them): a root holding anything else is not a store of ours."""
        return frozenset(p.name for p in (self.lock, self.tmp, self.layout))

    def created_dirs(self) -> tuple[Path, ...]:
        """The directories Store.open makes; the others appear on first use."""
        return (self.blobs, self.layers, self.cache, self.tmp)


@dataclass(frozen=True)
class LayoutPaths:
    """The names inside an OCI image layout directory other than the store's own: a build
    cache written to a directory (store/cache_transport.py)."""

    root: Path

    @property
    def oci_layout_file(self) -> Path:
        return self.root / "oci-layout"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def blob(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex
