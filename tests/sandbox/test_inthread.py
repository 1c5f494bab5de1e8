"""sandbox/inthread: a writer run in a thread whose root is the image's sees the image as /,
writes into the upper dir, and can neither import from the image nor run other code's
finalizers there."""

from __future__ import annotations

import builtins
import functools
import gc
import os
import sys
import threading
from pathlib import Path

import pytest

from builder.sandbox import inthread
from builder.sandbox.spec import OverlayRoot

pytestmark = pytest.mark.skipif(
    not inthread.available(OverlayRoot((), Path("/"), Path("/"))), reason="host root only"
)


def _root(tmp_path: Path) -> tuple[OverlayRoot, Path]:
    tmp_path.mkdir(exist_ok=True)
    lower, upper, work, point = (tmp_path / n for n in ("lower", "upper", "work", "point"))
    for d in (lower, upper, work, point):
        d.mkdir()
    (lower / "etc").mkdir()
    (lower / "etc" / "image-file").write_text("from the image\n")
    os.symlink("/", lower / "to-root")
    return OverlayRoot((lower,), upper, work), point


def test_the_writer_sees_the_image_as_root_and_writes_the_upper_dir(tmp_path: Path) -> None:
    root, point = _root(tmp_path)
    seen: list[str] = []

    def writer() -> int:
        with open("/etc/image-file") as f:
            seen.append(f.read())
        with open("/to-root/etc/written", "w") as f:  # the link resolves inside the image
            f.write("ours\n")
        seen.append(os.getcwd())
        return 7

    assert inthread.call(root, str(point), writer, 2) == 7
    assert seen == ["from the image\n", "/"]
    assert (root.upper / "etc" / "written").read_text() == "ours\n"
    assert not Path("/etc/written").exists()
    assert list(point.iterdir()) == []  # unmounted: the mount point is empty again
    assert os.getcwd() != "/"  # the caller's cwd (and root) are its own still


def test_no_module_is_imported_from_the_image(tmp_path: Path) -> None:
    """A module planted where our sys.path points, inside the image, is never run."""
    root, point = _root(tmp_path)
    name = "h15_planted_module"
    for entry in {p for p in sys.path if p.startswith("/")}:
        planted = Path(str(root.lowers[0]) + entry) / f"{name}.py"
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text("import builtins\nbuiltins.h15_planted_ran = True\n")
    errors: list[str] = []

    def writer() -> int:
        try:
            __import__(name)
        except ImportError as err:
            errors.append(str(err))
            return 1
        return 0

    assert inthread.call(root, str(point), writer, 2) == 1
    assert not getattr(builtins, "h15_planted_ran", False)
    assert errors and "no import inside an image's root" in errors[0]
    sys.modules.pop(name, None)


def test_the_collector_is_held_off_while_the_writer_runs(tmp_path: Path) -> None:
    root, point = _root(tmp_path)
    states: list[bool] = []
    assert gc.isenabled()
    assert inthread.call(root, str(point), lambda: int(states.append(gc.isenabled()) or 0), 2) == 0
    assert states == [False]
    assert gc.isenabled()


def test_an_exception_is_a_line_on_the_output_and_status_1(tmp_path: Path) -> None:
    root, point = _root(tmp_path)
    r, w = os.pipe()

    def writer() -> int:
        raise RuntimeError("boom")

    mounted = Path("/proc/self/mountinfo").read_text()
    try:
        assert inthread.call(root, str(point), writer, w) == 1
    finally:
        os.close(w)
    assert os.read(r, 1000) == b"builder: RuntimeError: boom\n"
    os.close(r)
    assert list(point.iterdir()) == [] and Path("/proc/self/mountinfo").read_text() == mounted


def test_calls_at_once_share_one_mount_point(tmp_path: Path) -> None:
    """Each thread mounts in a namespace of its own: two writers at once on one mount
    point each see their own root and fill their own upper dir."""
    point = tmp_path / "point"
    point.mkdir()
    roots = []
    for name in ("a", "b"):
        root, _ = _root(tmp_path / name)
        roots.append(root)
    both_in = threading.Barrier(2, timeout=10)

    def writer(name: str) -> int:
        both_in.wait()  # both mounted on `point` at once
        with open(f"/etc/{name}", "w") as f:
            f.write(name)
        return 0

    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda r=r, n=n: results.append(
                inthread.call(r, str(point), functools.partial(writer, n), 2)
            )
        )
        for r, n in zip(roots, ("a", "b"), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0, 0]
    assert os.listdir(roots[0].upper / "etc") == ["a"]
    assert os.listdir(roots[1].upper / "etc") == ["b"]
