#!/usr/bin/env python3
"""Make a minimal busybox root filesystem from the host's busybox-static.

Usage: busybox_rootfs.py DIR

The demo and the tests start every image from this rootfs (imported with `builder import`),
since no registry with public base images is reachable. Applet links are relative so the
tree is correct wherever it is unpacked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def make_rootfs(dest: Path) -> Path:
    if not BUSYBOX.exists():
        raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static")
    for sub in ("bin", "etc", "root", "tmp", "usr/bin", "usr/sbin", "sbin", "var", "proc", "dev"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:  # e.g. "usr/bin/env", "bin/sh"
        link = dest / applet
        if link.name == "busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(dest / "bin" / "busybox", link.parent))
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    make_rootfs(Path(sys.argv[1]))
