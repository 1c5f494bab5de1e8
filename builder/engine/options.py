"""What a build is asked to do and what it yields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from builder.engine.remote_cache import CacheSource, CacheTarget
from builder.image.compression import LayerCompression
from builder.record import dataclass, field
from builder.sandbox.limits import Limits
from builder.sandbox.spec import UsernsMode

if TYPE_CHECKING:  # a cached build never loads the sandbox's parsers
    from builder.sandbox.hosts import HostEntry
    from builder.sandbox.snapshotter import Snapshotter

# What a RUN step may ask for only when the build allows it (`--allow`), BuildKit's names.
NETWORK_HOST = "network.host"
SECURITY_INSECURE = "security.insecure"
ENTITLEMENTS = (NETWORK_HOST, SECURITY_INSECURE)


@dataclass(frozen=True)
class BuildOptions:
    context: Path
    recipe: Path | None = None  # default: CONTEXT/Dockerfile, else CONTEXT/Containerfile
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    # The layers' compression. None (nothing asked): new layers are zstd and a reused
    # layer (cached, or the base's) keeps the blob it has, as BuildKit does by default.
    # Asked (a LayerCompression, or a kind's name): every layer of the image has it,
    # converted if need be. `requested_compression` gives it as a value.
    compression: LayerCompression | str | None = None
    secrets: dict[str, bytes] = field(default_factory=dict)  # --secret: id -> bytes, in memory
    labels: dict[str, str] = field(default_factory=dict)  # --label K=V, on the final image
    # RUN's network unless the step says --network, BuildKit's names: "default" (a private
    # network with outbound access), "none" (loopback only), "host".
    network: str = "default"
    add_hosts: tuple[HostEntry, ...] = ()  # --add-host: lines of every RUN's /etc/hosts
    # --allow: the entitlements RUN steps may use (ENTITLEMENTS). network="host" grants
    # network.host itself, as buildx's --network host asks for it.
    allow: frozenset[str] = frozenset()
    source_date_epoch: int | None = None  # SOURCE_DATE_EPOCH: reproducible times (None: clock)
    pull: bool = False  # --pull: ask the registry for every named base, even one in the store
    # Shared caches (engine/remote_cache.py): read after the local cache misses, in order;
    # written after the build.
    cache_from: tuple[CacheSource, ...] = ()
    cache_to: tuple[CacheTarget, ...] = ()
    # Every RUN step's resource limits (cgroups): --memory, --cpus, --pids-limit...
    limits: Limits | None = None
    # --userns: RUN's container root is root ("host") or a leased unprivileged range.
    userns: UsernsMode = "host"
    # --jobs: how many independent stages build at once (None: the CPU count; 1: in order).
    jobs: int | None = None
    # The snapshotter every RUN's root is made with (sandbox/snapshotter.py): None probes
    # (overlayfs where it mounts, else fuse-overlayfs where it can serve, else the copying
    # "native"); the CLI's config or env forces.
    snapshotter: Snapshotter | None = None

    def entitlements(self) -> frozenset[str]:
        """What the build allows its RUN steps: --allow, and what --network implies."""
        return self.allow | ({NETWORK_HOST} if self.network == "host" else set())

    def requested_compression(self) -> LayerCompression | None:
        return LayerCompression.coerce(self.compression)

    def recipe_path(self) -> Path:
        if self.recipe is not None:
            return self.recipe
        for name in ("Dockerfile", "Containerfile"):
            candidate = self.context / name
            if os.path.lexists(candidate):  # unreadable: the recipe reader says so, in words
                return candidate
        return self.context / "Dockerfile"


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    manifest_digest: str
    tags: tuple[str, ...]
    steps: int
    cached_steps: int
