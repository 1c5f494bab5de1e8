"""builder: a daemonless container-image build tool.

The public surface: `build()`, `BuildOptions`, `BuildResult`, `Store` and the error tree.
Everything else is internal. Heavy modules load on first use, so `import builder` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from builder.errors import (
    BuildContextError,
    BuilderError,
    ImageNotFound,
    LayerError,
    RecipeError,
    RegistryError,
    SandboxError,
    StepFailed,
    StoreError,
    UsageError,
)

if TYPE_CHECKING:
    from builder.engine.engine import build
    from builder.engine.options import BuildOptions, BuildResult
    from builder.store import Store

_LAZY = {
    "build": "builder.engine.engine",
    "BuildOptions": "builder.engine.options",
    "BuildResult": "builder.engine.options",
    "Store": "builder.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")


__all__ = [
    "BuildContextError",
    "BuildOptions",
    "BuildResult",
    "BuilderError",
    "ImageNotFound",
    "LayerError",
    "RecipeError",
    "RegistryError",
    "SandboxError",
    "StepFailed",
    "Store",
    "StoreError",
    "UsageError",
    "build",
]
