"""layer/merged: whether the overlay of layer dirs shows a directory, read on the host.

Each case is checked against the kernel: the same layers mounted as a real overlayfs, where
the answer must be the same (and a `False` for a case overlayfs would show as a dir is only
ever "unsure", never wrong: the caller then asks the sandbox).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.layer.merged import is_dir_in
from builder.layer.whiteout import make_overlay_opaque, make_overlay_whiteout

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="whiteouts, trusted xattrs and mounts need root")

Layer = Callable[[Path], None]


def _layers(tmp_path: Path, *makers: Layer) -> list[Path]:
    """Layer dirs, bottom first, each filled by its maker."""
    out = []
    for i, make in enumerate(makers):
        layer = tmp_path / f"l{i}"
        layer.mkdir(parents=True)
        make(layer)
        out.append(layer)
    return out


def _kernel_says(tmp_path: Path, lowers: list[Path], path: str) -> bool:
    """What a real overlayfs of `lowers` shows: a directory at `path`, not through a symlink."""
    merged = tmp_path / "merged"
    merged.mkdir(exist_ok=True)
    empty = tmp_path / "empty"  # overlayfs with no upper dir wants two lowers at least
    empty.mkdir(exist_ok=True)
    lowerdir = ":".join(str(p) for p in [*reversed(lowers), empty])
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir}", str(merged)], check=True
    )
    try:
        current = merged
        for name in path.strip("/").split("/"):
            if not name:
                continue
            current = current / name
            if current.is_symlink() or not current.is_dir():
                return False
        return True
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def _dirs(*names: str) -> Layer:
    def make(layer: Path) -> None:
        for name in names:
            (layer / name).mkdir(parents=True, exist_ok=True)

    return make


def _whiteout(parent: str, name: str) -> Layer:
    def make(layer: Path) -> None:
        (layer / parent).mkdir(parents=True, exist_ok=True)
        fd = os.open(layer / parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            make_overlay_whiteout(name, fd)
        finally:
            os.close(fd)

    return make


def _opaque(name: str) -> Layer:
    def make(layer: Path) -> None:
        (layer / name).mkdir(parents=True)
        fd = os.open(layer / name, os.O_RDONLY | os.O_DIRECTORY)
        try:
            make_overlay_opaque(fd)
        finally:
            os.close(fd)

    return make


def _file(name: str) -> Layer:
    def make(layer: Path) -> None:
        (layer / name).parent.mkdir(parents=True, exist_ok=True)
        (layer / name).write_text("x")

    return make


def _symlink(name: str, target: str) -> Layer:
    def make(layer: Path) -> None:
        (layer / name).parent.mkdir(parents=True, exist_ok=True)
        (layer / name).symlink_to(target)

    return make


CASES: dict[str, tuple[tuple[Layer, ...], str, bool]] = {
    "the root": ((_dirs("etc"),), "/", True),
    "in the bottom layer": ((_dirs("srv/app"), _dirs("etc")), "/srv/app", True),
    "parents in different layers": ((_dirs("srv"), _dirs("srv/app")), "/srv/app", True),
    "missing": ((_dirs("srv"),), "/srv/app", False),
    "a file": ((_file("srv/app"),), "/srv/app", False),
    "a dir over a file": ((_file("srv/app"), _dirs("srv/app")), "/srv/app", True),
    "a file over a dir": ((_dirs("srv/app"), _file("srv/app")), "/srv/app", False),
    "whited out": ((_dirs("srv/app"), _whiteout("srv", "app")), "/srv/app", False),
    "a parent whited out": ((_dirs("srv/app"), _whiteout("", "srv")), "/srv/app", False),
    "made again after a whiteout": (
        (_dirs("srv/app"), _whiteout("", "srv"), _dirs("srv/app")),
        "/srv/app",
        True,
    ),
    "hidden by an opaque parent": ((_dirs("srv/app"), _opaque("srv")), "/srv/app", False),
    "the opaque dir itself": ((_dirs("srv/app"), _opaque("srv")), "/srv", True),
    "below a whiteout under a dir": (
        (_dirs("srv/app"), _whiteout("", "srv"), _dirs("srv")),
        "/srv/app",
        False,
    ),
    "through a symlink (left to the sandbox)": (
        (_dirs("data/app"), _symlink("srv", "/data")),
        "/srv/app",
        False,
    ),
}


@needs_root
@pytest.mark.parametrize("case", list(CASES))
def test_the_answer_is_the_kernels(tmp_path: Path, case: str) -> None:
    makers, path, expected = CASES[case]
    lowers = _layers(tmp_path, *makers)
    assert is_dir_in(lowers, path) is expected
    if expected or "symlink" not in case:  # (through a symlink overlayfs does show a dir)
        assert _kernel_says(tmp_path, lowers, path) is expected


def test_a_redirected_dir_is_left_to_the_sandbox(tmp_path: Path) -> None:
    """A renamed dir's redirect xattr: what it shows is overlayfs's to say."""
    lowers = _layers(tmp_path, _dirs("srv/app"))
    name = "trusted.overlay.redirect" if ROOT else "user.overlay.redirect"
    os.setxattr(lowers[0] / "srv", name, b"/old")
    assert not is_dir_in(lowers, "/srv/app")
    assert is_dir_in(_layers(tmp_path / "plain", _dirs("srv/app")), "/srv/app")
