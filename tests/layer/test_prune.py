"""Copied-up but unchanged directories leave the upper dir; every real change stays."""

from __future__ import annotations

import os
from pathlib import Path

from builder.layer.prune import prune_unchanged_dirs
from tests.layer.test_overlay import overlay


def _lower(tmp_path: Path) -> Path:
    lower = tmp_path / "lower"
    for sub in ("etc", "keep-mtime", "opaque", "deleted", "newmode"):
        (lower / sub).mkdir(parents=True)
        (lower / sub / "file").write_text("x")
        os.utime(lower / sub, ns=(10**18, 10**18))
    return lower


def test_only_unchanged_copy_ups_are_pruned(tmp_path: Path) -> None:
    lower = _lower(tmp_path)
    with overlay(tmp_path, [lower], "ov") as (merged, upper):
        # copy-up with nothing left changed (what a mount-point stub does to /etc)
        (merged / "etc" / "stub").write_text("")
        (merged / "etc" / "stub").unlink()
        os.utime(merged / "etc", ns=(10**18, 10**18))
        # the same, but the dir's mtime moved: a change docker keeps
        (merged / "keep-mtime" / "stub").write_text("")
        (merged / "keep-mtime" / "stub").unlink()
        # a file deleted: the whiteout keeps the dir
        (merged / "deleted" / "file").unlink()
        # mode changed
        os.chmod(merged / "newmode", 0o700)
        # a new empty dir
        (merged / "fresh").mkdir()
    # an opaque dir (as the layer unpacker writes it)
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    os.utime(upper / "opaque", ns=(10**18, 10**18))
    assert (upper / "etc").is_dir()
    assert prune_unchanged_dirs(upper, [lower]) == 1
    assert sorted(p.name for p in upper.iterdir()) == [
        "deleted",
        "fresh",
        "keep-mtime",
        "newmode",
        "opaque",
    ]
