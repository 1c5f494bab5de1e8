"""Device nodes shipped in an image, a layer or a bind-mounted context cannot be opened,
in a RUN step or in `builder run`: the root and every mount on it are `nodev`. Only the
nodes the sandbox itself puts in /dev work.

The image is imported from a directory holding char device nodes: /dev/null's numbers
(1,3) under another name — harmless to open — and, when the host has them, /dev/kvm's
(10,232) and the console's (5,1)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.e2e.support import Builder

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

NODES = {"mynull": (1, 3), "kvm": (10, 232), "console": (5, 1)}
# Opening each shipped node must fail; the sandbox's /dev/null must still work. The probe
# only opens (a read of the console would wait for input).
PROBE = (
    "for n in {names}; do if (true </d/$n) 2>/tmp/err; then "
    'echo "opened $n"; else cat /tmp/err; fi; done; echo ok > /dev/null && echo sandbox-dev-ok'
)


def _names() -> list[str]:
    # Only the numbers the host really has: a node for a missing driver fails with ENXIO
    # whatever the mount flags, and would prove nothing.
    return [n for n in NODES if n == "mynull" or os.path.exists(f"/dev/{n}")]


def _with_nodes(top: Path) -> None:
    (top / "d").mkdir()
    for name, (major, minor) in NODES.items():
        os.mknod(top / "d" / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))


def _check(out: str, names: list[str]) -> None:
    assert "opened" not in out, out
    assert out.count("Permission denied") == len(names), out
    assert out.rstrip().endswith("sandbox-dev-ok"), out


def test_nodes_in_an_image_cannot_be_opened(
    builder: Builder, busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    _with_nodes(rootfs)
    builder("import", rootfs, "devs:latest")
    names = _names()
    probe = PROBE.format(names=" ".join(names))

    _check(builder("run", "--rm", "devs", "sh", "-c", probe, timeout=60).stdout, names)

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM devs\nRUN {{ {probe}; }} > /seen\n")
    builder("build", "-t", "probe", context)
    _check(builder("run", "--rm", "probe", "cat", "/seen").stdout, names)


def test_a_context_holding_a_device_node_is_refused(builder: Builder, tmp_path: Path) -> None:
    """Nodes never reach a RUN through the context: its bind mount is a filtered copy, which
    refuses them (and the bind is nodev besides)."""
    context = tmp_path / "ctx"
    context.mkdir()
    _with_nodes(context)
    (context / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=bind,target=/c true\n")
    out = builder("build", context, check=False)
    assert out.status == 10
    assert "only files, directories and symlinks can be copied" in out.stderr
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
