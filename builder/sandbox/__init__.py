"""Run a process in Linux namespaces on an overlay (or plain directory) root.

Knows nothing of images or recipes: it runs a process in a root it is given. RUN steps and
`builder run` both describe their process as a SandboxSpec and call `run` (or `call`).

The names load on first use (PEP 562): the engine imports `builder.sandbox.users` (the
passwd reader its COPY writer shares) on every build, and a fully cached build must not pay
for the namespace machinery it never runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.sandbox.process import call, run
    from builder.sandbox.spec import DEVNULL, DirRoot, Mount, OverlayRoot, SandboxSpec

_LAZY = {
    "call": "builder.sandbox.process",
    "run": "builder.sandbox.process",
    "DEVNULL": "builder.sandbox.spec",
    "DirRoot": "builder.sandbox.spec",
    "Mount": "builder.sandbox.spec",
    "OverlayRoot": "builder.sandbox.spec",
    "SandboxSpec": "builder.sandbox.spec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'builder.sandbox' has no attribute {name!r}")


__all__ = ["DEVNULL", "DirRoot", "Mount", "OverlayRoot", "SandboxSpec", "call", "run"]
