"""A behaviour case as a value: a recipe, its context, and what docker build (BuildKit) makes of it.

Each case is ported from a BuildKit Dockerfile-frontend integration test (`source` names it):
the facts are theirs, the recipe and context are ours. A case expects either an image —
files (content, mode, owner, symlink target), absent paths, config fields, history — or a
failure: our exit code and a substring of the one `error:` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass(frozen=True)
class F:
    """An expected file in the image (each field None means "not checked").

    kind: "file", "dir" or "symlink"; mode: the permission bits (0o7777 part).
    """

    content: str | bytes | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    link: str | None = None
    kind: str | None = None
    contains: Sequence[str] = ()  # substrings of the content
    lacks: Sequence[str] = ()  # substrings the content must not hold


@dataclass(frozen=True)
class Src:
    """A context entry that is more than text: bytes, a mode, a symlink, a directory."""

    content: str | bytes = ""
    mode: int | None = None
    link: str | None = None
    dir: bool = False


@dataclass(frozen=True)
class Fails:
    """The build must fail: our exit code (builder/errors.py; None: any but 0) and a substring
    of stderr."""

    exit_code: int | None
    message: str = ""


NOT_SET = object()


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # the BuildKit test the facts come from
    recipe: str
    context: Mapping[str, str | bytes | Src] = field(default_factory=dict)
    flags: Sequence[str] = ()  # extra `builder build` flags: --build-arg, --target, --secret …
    env: Mapping[str, str] = field(default_factory=dict)  # the CLI's environment (secrets)
    files: Mapping[str, F | str] = field(default_factory=dict)  # a str is the content
    absent: Sequence[str] = ()
    # Fields of the config's "config" object; NOT_SET means the key must be missing.
    config: Mapping[str, Any] = field(default_factory=dict)
    env_has: Mapping[str, str] = field(default_factory=dict)  # Env entries NAME -> value
    env_lacks: Sequence[str] = ()  # Env names that must not be there
    # created_by (and empty_layer) of the history entries this build added past its base
    history: Sequence[tuple[str, bool]] | None = None
    history_base: int = 3  # entries of the final stage's base: busybox 3, scratch 0
    fails: Fails | None = None
    xfail: str | None = None  # "issue 10: …" or "gap: …": strict, so a fix must drop it
    no_cache: bool = False
    # Images built first, in order, into the same store: (name, recipe), same context. A
    # name is used as is, so a case prefixes its own (ONBUILD parents, base images).
    before: Sequence[tuple[str, str]] = ()
    # Entry names (as the tar holds them, e.g. "d/.wh.f") that the image's last layer must
    # hold: how whiteouts are written, read from a `builder save` OCI archive.
    last_layer: Sequence[str] = ()


def params(cases: Sequence[Case]) -> list[Any]:
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [],
        )
        for case in cases
    ]
