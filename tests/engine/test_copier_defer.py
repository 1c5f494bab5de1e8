"""The COPY writer's deferred files (engine/relink): a file whose bytes the host may link is
not written in the root, but only where writing it would succeed. In a dir the writer made
itself, it does not look whether a dir stands at the name unless it made one there, or a
symlink of the COPY's may have made one by another path: either way it must write (and
fail) as it does without deferring."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from builder.engine import relink
from builder.engine.context import BuildContext
from builder.engine.copier import Ownership, copy_into_root, read_report
from builder.image.mediatypes import Compression
from builder.layer.write import write_layer


def _copy(context: Path, sources: tuple[str, ...], root: Path, defer: bool) -> tuple[int, dict]:
    items = BuildContext(context).plan_copy(sources, "/dest/")
    deferred = frozenset(i for i, item in enumerate(items) if item.entry.kind == "file" and defer)
    root.mkdir()
    fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)
    report = os.open(root.parent, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        status = copy_into_root(str(root), fd, items, [], Ownership(None), None, False,
                                deferred, report)  # fmt: skip
        return status, read_report(report).files if status == 0 else {}
    finally:
        os.close(fd)
        os.close(report)


def _tree(context: Path, files: dict[str, str], links: dict[str, str]) -> None:
    for path, text in files.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_text(text)
    for path, target in links.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, context / path)


@pytest.mark.parametrize(
    ("files", "links", "sources"),
    [
        # s1 makes dest/x a dir; s2's file x lands on it.
        ({"s1/x/f": "in x", "s2/x": "a file"}, {}, ("s1", "s2")),
        # s2's symlink dest/a -> n (a dir s1 made); s3 makes dest/a/x, i.e. dest/n/x,
        # through it; s4's file n/x lands on that dir.
        (
            {"s1/n/keep": "k", "s3/a/x/f": "f", "s4/n/x": "a file"},
            {"s2/a": "n"},
            ("s1", "s2", "s3", "s4"),
        ),
    ],
)
def test_a_deferred_file_where_a_dir_stands_fails_as_a_written_one(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    files: dict[str, str],
    links: dict[str, str],
    sources: tuple[str, ...],
) -> None:
    context = tmp_path / "ctx"
    _tree(context, files, links)
    written = _copy(context, sources, tmp_path / "written", defer=False)
    said = capfd.readouterr().err
    deferred = _copy(context, sources, tmp_path / "deferred", defer=True)
    assert written[0] == deferred[0] == 1
    assert "Is a directory" in said
    assert capfd.readouterr().err == said


def test_files_in_dirs_made_here_are_deferred_without_being_written(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    _tree(context, {f"d{d}/f{i}": f"{d}.{i}" for d in range(3) for i in range(20)}, {})
    status, report = _copy(context, (".",), tmp_path / "root", defer=True)
    assert status == 0
    assert len(report) == 60 and all(deferred for _, _, deferred in report.values())
    assert sorted(os.listdir(tmp_path / "root" / "dest" / "d1")) == []


OLD = 1_600_000_000  # the context's mtimes
EPOCH = 1_700_000_000  # clamps the dirs the copy makes (they take the clock's time)


def _layer(root: Path) -> bytes:
    out = io.BytesIO()
    write_layer(root, out, Compression.NONE, mtime_clamp=EPOCH)
    return out.getvalue()


@pytest.mark.parametrize("lanes", [2, 3])
def test_a_cold_copy_of_many_files_placed_in_lanes_is_the_layer_the_writer_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lanes: int
) -> None:
    monkeypatch.setattr(relink, "_lanes", lambda: lanes)
    context = tmp_path / "ctx"
    files = {f"a/d{d}/f{i}": f"{d}.{i}\n" * (i % 9) for d in range(6) for i in range(100)}
    # b/ comes second: a file written again, and a symlink over a deferred file.
    files |= {"a/d2/f7": "old", "b/d2/f7": "written again\n", "b/d4/only": "b's"}
    _tree(context, files, {"b/d3/f5": "f6"})
    for path in [context, *context.rglob("*")]:
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    (context / "a" / "d1" / "f2").chmod(0o751)
    items = BuildContext(context).plan_copy(("a", "b"), "/dest/")
    deferred = relink.candidates(items, None)
    assert len(deferred) == 602  # every file: no previous layer, and LANES_FROM of them

    roots = {}
    for name, defer in (("written", frozenset[int]()), ("lanes", deferred)):
        root = roots[name] = tmp_path / name
        root.mkdir()
        fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)
        report_fd = os.open(tmp_path, os.O_TMPFILE | os.O_RDWR, 0o600)
        try:
            status = copy_into_root(str(root), fd, items, [], Ownership(None), None, False,
                                    defer, report_fd)  # fmt: skip
            assert status == 0
            report = read_report(report_fd)
        finally:
            os.close(fd)
            os.close(report_fd)
        placed = relink.place_deferred(root, None, report, items, context)
        assert placed == 0  # (copied, none linked: there is no previous layer)
    assert _layer(roots["lanes"]) == _layer(roots["written"])
    assert (roots["lanes"] / "dest" / "d2" / "f7").read_text() == "written again\n"
    assert os.readlink(roots["lanes"] / "dest" / "d3" / "f5") == "f6"
    assert (roots["lanes"] / "dest" / "d1" / "f2").stat().st_mode & 0o777 == 0o751


def test_a_cold_copy_of_fewer_files_stays_in_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relink, "_lanes", lambda: 2)
    context = tmp_path / "ctx"
    _tree(context, {f"d/f{i}": str(i) for i in range(relink.LANES_FROM - 1)}, {})
    items = BuildContext(context).plan_copy((".",), "/dest/")
    assert relink.candidates(items, None) == frozenset()
    (context / "d" / "one-more").write_text("x")
    items = BuildContext(context).plan_copy((".",), "/dest/")
    assert len(relink.candidates(items, None)) == relink.LANES_FROM
    monkeypatch.setattr(relink, "_lanes", lambda: 1)  # one core: no lanes to gain
    assert relink.candidates(items, None) == frozenset()
