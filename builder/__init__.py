"""builder: a daemonless container-image build tool.

The public surface: `build()`, `BuildOptions`, `BuildResult`, `Store` and the error tree.
Everything else is internal. Every name loads on first use (PEP 562), so `import builder`
costs nothing: the console script (builder.cli.client) decides whether a warm server runs
the call before it imports anything, not even `typing` or builder.errors.
"""

# typing's own TYPE_CHECKING would import typing (~3 ms); mypy treats any name
# TYPE_CHECKING as true, and Python sees False.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from builder.engine.engine import build
    from builder.engine.options import BuildOptions, BuildResult
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
    from builder.store import Store

_LAZY = {
    "build": "builder.engine.engine",
    "BuildOptions": "builder.engine.options",
    "BuildResult": "builder.engine.options",
    "Store": "builder.store",
    **dict.fromkeys(
        (
            "BuildContextError",
            "BuilderError",
            "ImageNotFound",
            "LayerError",
            "RecipeError",
            "RegistryError",
            "SandboxError",
            "StepFailed",
            "StoreError",
            "UsageError",
        ),
        "builder.errors",
    ),
}


def __getattr__(name: str) -> object:
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
