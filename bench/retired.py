"""Trees a measurement is done with, set aside until the bench ends instead of removed.

This machine's ext4 has no journal, and there the inode allocator will not reuse an inode
freed in the last 60 s (300 s while its inode table block is dirty): it scans past every
such inode of the group for each file it creates (fs/ext4/ialloc.c, `recently_deleted`).
Removing a 50,000-file store just before the next cold build made each of that build's
new files cost up to ~1 ms of system time (perf: `recently_deleted`, `find_inode_bit`),
and the 50,000-file RUN of big-rootfs-small-change took ~30 s instead of ~7 s: the bench
timed its own clean-up. A retired tree is renamed (one metadata write) into a dir of the
bench's work dir, which goes with it at the end.
"""

from __future__ import annotations

import itertools
from pathlib import Path

_count = itertools.count()


def retire(path: Path, work: Path) -> None:
    """Move `path` out of the way, to be removed with `work`."""
    attic = work / "retired"
    attic.mkdir(exist_ok=True)
    path.rename(attic / f"{next(_count)}-{path.name}")
