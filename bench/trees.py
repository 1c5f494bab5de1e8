"""Another checkout to time against (`--baseline TREE`), as the bench's processes see it.

Its `builder` package is copied into the bench's work dir and compiled there, as `make
bench` compiles ours: the checkout itself is not written to (it may be another engineer's
tree), and stale or missing bytecode would time the compiler, not the code.
"""

from __future__ import annotations

import compileall
import shutil
from pathlib import Path

# The cwd of every timed process: `python -m builder` puts its cwd first on sys.path, so one
# started in a checkout imports that checkout's builder, whatever PYTHONPATH says.
OUTSIDE = "/"


def compiled_copy(tree: Path, work: Path) -> Path:
    """A directory to put on PYTHONPATH: TREE's builder package, byte-compiled."""
    dest = work / "baseline-tree"
    if not dest.exists():
        shutil.copytree(
            tree / "builder", dest / "builder", ignore=shutil.ignore_patterns("__pycache__")
        )
        compileall.compile_dir(dest / "builder", quiet=1)
    return dest
