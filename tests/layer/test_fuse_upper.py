"""layer/fuse_upper: upper dirs a real fuse-overlayfs left, in the forms it writes where the
CLI-level test (tests/e2e/test_snapshotters.py, as root on this store) does not reach them:
in a user namespace (its `user.fuseoverlayfs.*` xattrs) and on an upper file system that
refuses char 0/0 whiteouts (its `.wh.NAME` files), turned into overlayfs's form."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from builder.layer import whiteout as wh
from builder.layer.fuse_upper import normalize
from builder.layer.xattrs import read_xattrs

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="fuse-overlayfs needs /dev/fuse: root's here"),
    pytest.mark.skipif(shutil.which("fuse-overlayfs") is None, reason="needs fuse-overlayfs"),
]

# What the RUN does, through fuse-overlayfs: remove a lower file, replace a lower dir (an
# opaque dir), make a fresh dir (plain in overlayfs), make and remove a file and a dir of
# its own (no whiteout in overlayfs: nothing below to hide).
SCRIPT = """
set -e
fuse-overlayfs -f -o lowerdir={lower},upperdir={upper},workdir={work} {merged} 2>/dev/null &
for i in $(seq 500); do mountpoint -q {merged} && break; sleep 0.01; done
cd {merged}
rm f && rm -r d && mkdir d && echo z > d/z && mkdir fresh && echo n > fresh/n
touch gone && rm gone && mkdir gonedir && rmdir gonedir
cd /
umount {merged}
wait
"""


def _run(tmp_path: Path, upper_parent: Path, userns: bool) -> tuple[Path, Path]:
    lower = tmp_path / "lower"
    (lower / "d").mkdir(parents=True)
    (lower / "f").write_text("f")
    (lower / "d" / "x").write_text("x")
    upper, work, merged = upper_parent / "upper", upper_parent / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    script = SCRIPT.format(lower=lower, upper=upper, work=work, merged=merged)
    unshare = ["unshare", "-Urm"] if userns else ["unshare", "-m", "--propagation", "private"]
    subprocess.run([*unshare, "sh", "-c", script], check=True, timeout=60)
    return lower, upper


def _all(upper: Path) -> dict[str, tuple[int, dict[str, bytes]]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, upper)] = (stat.S_IFMT(st.st_mode), read_xattrs(path))
    return out


def _check(upper: Path, whiteout_xattr: bool) -> None:
    entries = _all(upper)
    assert set(entries) == {"f", "d", "d/z", "fresh", "fresh/n"}
    kind, xattrs = entries["f"]
    assert wh.is_overlay_whiteout(os.lstat(upper / "f"), xattrs)
    assert (kind == stat.S_IFREG) == whiteout_xattr  # else a char 0/0
    assert wh.is_overlay_opaque(entries["d"][1])
    assert not wh.is_overlay_opaque(entries["fresh"][1])
    private = [n for _, (_, x) in entries.items() for n in x if "fuseoverlayfs" in n]
    assert private == []


def test_a_user_namespace_upper_dir_is_put_in_overlay_form(tmp_path: Path) -> None:
    lower, upper = _run(tmp_path, tmp_path, userns=True)
    assert "user.fuseoverlayfs.opaque" in read_xattrs(str(upper / "d"))  # what it wrote
    before = os.lstat(upper / "d").st_mtime_ns
    normalize(upper, [lower])
    _check(upper, whiteout_xattr=False)
    assert os.lstat(upper / "d").st_mtime_ns == before  # its markers' removal is not a change


def test_an_upper_dir_that_refuses_char_whiteouts_is_put_in_overlay_form(
    tmp_path: Path,
) -> None:
    """Its upper on an overlayfs (which refuses char 0/0 in it): `.wh.f` files, made real
    whiteouts in the xattr form the writer reads."""
    base = tmp_path / "ovl"
    for d in ("l", "u", "w", "m"):
        (base / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base}/l,upperdir={base}/u,workdir={base}/w", str(base / "m")],
                   check=True)  # fmt: skip
    try:
        lower, upper = _run(tmp_path, base / "m", userns=False)
        assert (upper / ".wh.f").is_file()  # what it wrote
        normalize(upper, [lower])
        _check(upper, whiteout_xattr=True)
    finally:
        subprocess.run(["umount", "-l", str(base / "m")], check=False)
