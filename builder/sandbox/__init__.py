"""Run a process in Linux namespaces on an overlay (or plain directory) root.

Knows nothing of images or recipes: it runs a process in a root it is given. RUN steps and
`builder run` both describe their process as a SandboxSpec and call `run` (or `call`).
"""

from builder.sandbox.process import call, run
from builder.sandbox.spec import DEVNULL, DirRoot, Mount, OverlayRoot, SandboxSpec

__all__ = ["DEVNULL", "DirRoot", "Mount", "OverlayRoot", "SandboxSpec", "call", "run"]
