"""root/tmp: scratch space on the store's filesystem, so finished work is renamed into place.

Every entry's name holds the pid of the process that made it (`PREFIX-PID-RANDOM`), so gc
can tell a live one from one a crash left behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from builder.store.removal import remove

_PID = re.compile(r"-(\d+)-[^-]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Scratch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def new_dir(self, prefix: str) -> Path:
        """A new private dir, named with our pid so gc can tell it is live."""
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=self.path))

    def new_name(self, prefix: str) -> Path:
        """A fresh unused path (nothing is created there) for a file the caller opens
        exclusively itself."""
        fd, name = tempfile.mkstemp(prefix=f"{prefix}-{os.getpid()}-", dir=self.path)
        os.close(fd)
        os.unlink(name)
        return Path(name)

    def sweep(self) -> int:
        """Remove what dead processes left; returns the bytes freed."""
        freed = 0
        me = os.getpid()
        for entry in self.path.iterdir():
            m = _PID.search(entry.name)
            pid = int(m.group(1)) if m else None
            if pid is None or (pid != me and not _alive(pid)):
                freed += remove(entry)
        return freed
