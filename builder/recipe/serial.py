"""A typed recipe as JSON and back, so a build can keep what it parsed.

Pure: values in, values out. The build engine keys what it keeps by the recipe's text and
the parser's own source (see `parser_fingerprint`), so a changed grammar or parser never
serves a stale result.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import record
from builder.errors import SourceLocation
from builder.image.platform import Platform
from builder.recipe import instructions as ins
from builder.recipe.mounts import RunMount
from builder.recipe.tree import Heredoc

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        *(c for c in vars(ins).values() if isinstance(c, type) and issubclass(c, ins.Instruction)),
        ins.Recipe,
        Heredoc,
        SourceLocation,
        RunMount,
        Platform,
    )
}


def to_json(value: Any) -> Any:
    if record.is_dataclass(value) and not isinstance(value, type):
        out = {"@": type(value).__name__}
        for f in record.fields(value):
            out[f.name] = to_json(getattr(value, f.name))
        return out
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of to_json: every list was a tuple (the values are frozen)."""
    if isinstance(value, dict):
        cls = _TYPES[value["@"]]
        return cls(**{k: from_json(v) for k, v in value.items() if k != "@"})
    if isinstance(value, list):
        return tuple(from_json(v) for v in value)
    return value


def recipe_from_json(value: Any) -> ins.Recipe:
    recipe = from_json(value)
    if not isinstance(recipe, ins.Recipe):
        raise ValueError("not a recipe")
    return recipe


@functools.cache
def parser_fingerprint() -> str:
    """A digest of what a parse depends on: the grammar, this package's source, the image
    vocabulary it parses values with (durations, platforms), and the host's platform (the
    only one FROM --platform accepts). Once per process: the code it describes is the code
    this process loaded (a warm server computes it before it forks, and refuses to serve
    once the files change; reading ~50 files cost a cached build ~8 ms in each child)."""
    # The directories themselves: importlib.resources would cost a cached build its import.
    here = Path(__file__).parent
    packages = {"builder.recipe": here, "builder.image": here.parent / "image"}
    return fingerprint_of(packages, str(Platform.host()))


def fingerprint_of(packages: Mapping[str, Traversable], host: str) -> str:
    h = hashlib.sha256(host.encode())
    for name, package in packages.items():
        for item in sorted(package.iterdir(), key=lambda p: p.name):
            if item.name.endswith((".py", ".lark")):
                h.update(f"{name}/{item.name}".encode() + b"\0" + item.read_bytes())
    return h.hexdigest()
