"""The public surface in `builder/__init__.py`: every name in `__all__` is what it says."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import builder
from builder import errors


def test_every_public_name_resolves() -> None:
    assert sorted(builder.__all__) == builder.__all__
    for name in builder.__all__:
        value = getattr(builder, name)
        assert value is not None, name
        if name[0].isupper() and name not in ("BuildOptions", "BuildResult", "Store"):
            assert issubclass(value, errors.BuilderError), name
            assert value is getattr(errors, name)


def test_lazy_names_are_the_engine_values_every_time() -> None:
    from builder.engine.engine import build
    from builder.engine.options import BuildOptions, BuildResult
    from builder.store import Store

    # Importing the engine's modules must not shadow the facade's function (a subpackage
    # named like a facade function once did, on the second access).
    importlib.import_module("builder.engine.engine")
    for _ in range(2):
        assert builder.build is build and inspect.isfunction(builder.build)
        assert builder.BuildOptions is BuildOptions and builder.BuildResult is BuildResult
        assert builder.Store is Store and inspect.isclass(builder.Store)


def test_importing_the_package_is_cheap() -> None:
    """`import builder` loads no engine, store, grammar or compression modules."""
    probe = (
        "import sys, builder\n"
        "heavy = [m for m in sys.modules if m.startswith(('builder.engine', 'builder.store',"
        " 'builder.sandbox', 'lark', 'zstandard', 'tqdm'))]\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        builder.no_such_name  # noqa: B018
