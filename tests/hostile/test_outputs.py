"""Issue 11, item 2: every -o, --iidfile and --metadata-file is written as `>` would be, but
whole: a regular file or a new path atomically (temp file, rename), a symlink followed, a
character device or FIFO written in place (never replaced by a rename), `-` on stdout, and a
missing parent directory a clear error before any work."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.e2e.support import Builder, make_context

RECIPE = "FROM busybox\nRUN echo hi > /hi\n"


def _is_char_device(path: str) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


def test_a_device_is_written_in_place_never_replaced(builder: Builder, tmp_path: Path) -> None:
    builder("save", "busybox", "-o", "/dev/null")
    assert _is_char_device("/dev/null")
    full = builder("save", "busybox", "-o", "/dev/full", check=False)
    assert _is_char_device("/dev/full")  # once, a rename turned it into a regular file
    assert full.status == 6 and full.stderr.count("error:") == 1, full.stderr
    assert "no space left on device" in full.stderr and "Traceback" not in full.stderr
    context = make_context(tmp_path, RECIPE)
    builder("build", "--iidfile", "/dev/null", "--metadata-file", "/dev/null", context)
    assert _is_char_device("/dev/null")


def test_a_symlink_is_followed_and_stdout_is_dash(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, RECIPE)
    (tmp_path / "real.id").write_text("old")
    (tmp_path / "link.id").symlink_to("real.id")
    built = builder("build", "--iidfile", tmp_path / "link.id", context)
    assert (tmp_path / "link.id").is_symlink()
    image_id = (tmp_path / "real.id").read_text()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    to_stdout = builder("build", "--iidfile", "-", context)
    assert to_stdout.stdout == image_id and "Traceback" not in built.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_a_missing_parent_is_one_error_before_any_work(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, RECIPE)
    for flag in ("--iidfile", "--metadata-file"):
        result = builder("build", flag, tmp_path / "nope" / "out", context, check=False)
        assert result.status == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {flag} {tmp_path}/nope/out: its directory does not exist"
        ]
    result = builder("save", "busybox", "-o", tmp_path / "nope" / "x.tar", check=False)
    assert result.status == 2 and result.stderr.count("error:") == 1
    assert "Traceback" not in result.stderr
