"""The snapshotter a build or `builder run` is forced to: $BUILDER_SNAPSHOTTER, else the
config file's `[build] snapshotter` (BuildKit's names: overlayfs, fuse-overlayfs, native,
auto), else None (auto: overlayfs where it mounts, else fuse-overlayfs where it can serve,
else the copying snapshotter; sandbox/snapshotter.py)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from builder.errors import UsageError

if TYPE_CHECKING:
    from builder.sandbox.snapshotter import Snapshotter


def forced() -> Snapshotter | None:
    from builder.sandbox.snapshotter import ENV, parse

    value = os.environ.get(ENV)
    if value:
        return parse(value, f"${ENV}")
    from builder.config import load_document, table

    document, path = load_document()
    setting: Any = table(document, "build", path).get("snapshotter", "auto")
    if not isinstance(setting, str):
        raise UsageError(f"config file {path}: [build] snapshotter must be a string")
    return parse(setting, f"config file {path}: [build] snapshotter")
