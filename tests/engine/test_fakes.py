"""The fake executor itself: the merged view it gives writers, and the upper dir it leaves,
must be what overlayfs would have given and left, or the step tests prove nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.engine.executor import OverlayRoot, Process
from builder.layer.whiteout import make_overlay_whiteout
from tests.engine.fakes import Effect, FakeExecutor


def _root(tmp_path: Path) -> OverlayRoot:
    bottom, top = tmp_path / "bottom", tmp_path / "top"
    (bottom / "d").mkdir(parents=True)
    (bottom / "a").write_text("a")
    (bottom / "d" / "b").write_text("b")
    (bottom / "gone").write_text("deleted by the top layer")
    (top / "d").mkdir(parents=True)
    (top / "d" / "b").write_text("b, newer")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        make_overlay_whiteout("gone", fd)
    finally:
        os.close(fd)
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    return OverlayRoot((bottom, top), tmp_path / "upper", tmp_path / "work")


def _whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_a_writer_sees_the_merged_layers_and_its_changes_land_in_the_upper_dir(
    tmp_path: Path,
) -> None:
    root = _root(tmp_path)
    seen: dict[str, str | None] = {}

    def writer(at: str) -> int:
        for name in ("a", "d/b", "gone"):
            path = Path(at, name)
            seen[name] = path.read_text() if path.exists() else None
        Path(at, "a").unlink()
        Path(at, "d", "c").write_text("c")
        return 0

    assert FakeExecutor().call(root, "COPY", writer, output=2) == 0
    assert seen == {"a": "a", "d/b": "b, newer", "gone": None}
    upper = root.upper
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["a", "d", "d/c"]
    assert _whiteout(upper / "a") and (upper / "d" / "c").read_text() == "c"
    assert not (root.work / "merged").exists()


def test_a_failing_writer_leaves_nothing_and_says_why_on_the_output(tmp_path: Path) -> None:
    root = _root(tmp_path)
    read_fd, write_fd = os.pipe()

    def writer(at: str) -> int:
        Path(at, "new").write_text("x")
        raise ValueError("broken")

    assert FakeExecutor().call(root, "COPY", writer, output=write_fd) == 1
    os.close(write_fd)
    assert os.read(read_fd, 1000) == b"builder: ValueError: broken\n"
    os.close(read_fd)
    assert list(root.upper.iterdir()) == []


def test_a_scripted_run_changes_only_the_upper_dir_and_only_on_success(tmp_path: Path) -> None:
    root = _root(tmp_path)
    fake = FakeExecutor(
        {
            "ok": Effect(files={"/d/new": "n"}, delete=("/a",)),
            "bad": Effect(files={"/x": "x"}, status=2),
        }
    )
    process = Process(("/bin/sh", "-c", "bad"), (), "/", "", "none")
    assert fake.run(root, process, output=2) == 2 and list(root.upper.iterdir()) == []
    assert fake.run(root, Process(("/bin/sh", "-c", "ok"), (), "/", "", "none"), output=2) == 0
    assert (root.upper / "d" / "new").read_text() == "n" and _whiteout(root.upper / "a")
    assert (tmp_path / "bottom" / "a").read_text() == "a"  # lowers are never written
