"""A directory tree 2,500 levels deep (deeper than Python's stack, paths past PATH_MAX)
through every walk of ours: layer writing and unpacking (and flattening), copy-up pruning,
removal and sizing, the context walk, COPY's writer and COPY --from's pack and unpack; and
end to end, a RUN that makes one, then `builder prune --all`.

Each walk runs with few open files allowed: one holding an fd per level would fail.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.engine.context import BuildContext
from builder.engine.copier import Ownership, copy_into_root
from builder.engine.stagecopy import Destination, pack, unpack
from builder.layer.apply import unpack_layer
from builder.layer.compression import Compression
from builder.layer.prune import prune_unchanged_dirs
from builder.layer.tree import remove_tree
from builder.layer.write import write_layer
from builder.store.removal import remove, remove_children
from tests.e2e.support import Builder, make_context
from tests.hostile.trees import DEPTH, LEAF, chain_depth, deep_name, few_fds, make_deep


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """Every test's trees go when it ends: pytest's own clean-up of old tmp dirs (shutil's
    recursive rmtree) would fail on them, in every later run on this machine."""
    yield
    for child in tmp_path.iterdir():
        remove_tree(child, ignore_errors=True)


def _layer_of(top: Path) -> bytes:
    out = io.BytesIO()
    with few_fds():
        write_layer(top, out, Compression.NONE)
    return out.getvalue()


def test_layer_writer_walks_a_deep_tree(tmp_path: Path) -> None:
    blob = _layer_of(make_deep(tmp_path / "upper"))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = tar.getmembers()
        leaf = tar.extractfile(members[-1])
        assert leaf is not None and leaf.read() == LEAF
    assert len(members) == DEPTH + 1
    assert members[-1].name == deep_name()


def test_unpack_and_flatten_a_deep_layer(tmp_path: Path) -> None:
    blob = _layer_of(make_deep(tmp_path / "upper"))
    with few_fds():
        unpack_layer(io.BytesIO(blob), tmp_path / "unpacked")
    assert chain_depth(tmp_path / "unpacked") == (DEPTH, LEAF)
    # Flattened: the deep layer, then one whose opaque marker at d/ purges it all.
    opaque = io.BytesIO()
    with tarfile.open(fileobj=opaque, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind in (("d", tarfile.DIRTYPE), ("d/.wh..wh..opq", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o755
            tar.addfile(info)
    with few_fds():
        unpack_layer(io.BytesIO(blob), tmp_path / "flat", flatten=True)
        assert chain_depth(tmp_path / "flat") == (DEPTH, LEAF)
        unpack_layer(io.BytesIO(opaque.getvalue()), tmp_path / "flat", flatten=True)
    assert chain_depth(tmp_path / "flat") == (1, None)


def test_pruning_walks_a_deep_upper_dir(tmp_path: Path) -> None:
    # An upper dir that holds the lower's deep chain, copied up and unchanged: all of it goes.
    lower = make_deep(tmp_path / "lower", leaf=None)
    upper = make_deep(tmp_path / "upper", leaf=None)
    os.utime(upper, (0, 0))
    with few_fds():
        assert prune_unchanged_dirs(upper, [lower]) == DEPTH
    assert chain_depth(upper) == (0, None)
    # With a file at the bottom, nothing is unchanged.
    upper = make_deep(tmp_path / "upper2")
    with few_fds():
        assert prune_unchanged_dirs(upper, [lower]) == 0
    assert chain_depth(upper) == (DEPTH, LEAF)


def test_removal_and_its_size_walk_a_deep_tree(tmp_path: Path) -> None:
    make_deep(tmp_path / "tmp" / "upper-1-x")
    make_deep(tmp_path / "tmp" / "work-1-x")
    with few_fds():
        assert remove(tmp_path / "tmp" / "upper-1-x") > DEPTH * 4096 // 2
        assert remove_children(tmp_path / "tmp") > 0
    assert list((tmp_path / "tmp").iterdir()) == []


def test_context_walk_and_copy_of_a_deep_context(tmp_path: Path) -> None:
    context = make_deep(tmp_path / "ctx")
    with few_fds():
        entries = BuildContext(context).entries
        assert len(entries) == DEPTH + 1
        items = BuildContext(context).plan_copy((".",), "/app/")
        root = tmp_path / "root"
        root.mkdir()
        fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)
        try:
            status = copy_into_root(str(root), fd, items, [], Ownership(None), None)
        finally:
            os.close(fd)
    assert status == 0
    assert chain_depth(root / "app") == (DEPTH, LEAF)


def test_copy_from_packs_and_unpacks_a_deep_tree(tmp_path: Path) -> None:
    source_root = tmp_path / "source"
    make_deep(source_root / "src")
    carried = tmp_path / "carried.tar"
    with few_fds(), open(carried, "w+b") as stream:
        assert pack(str(source_root), stream.fileno(), ("/src",)) == 0
        stream.seek(0)
        target_root = tmp_path / "target"
        target_root.mkdir()
        dest = Destination("/copied", single=True)
        assert unpack(str(target_root), stream.fileno(), dest, Ownership(None), None) == 0
    assert chain_depth(target_root / "copied") == (DEPTH, LEAF)


DEEP_RUN = f"""\
FROM busybox AS deep
# Built bottom-up by renames: every path the shell names stays short (cd would not).
RUN mkdir d && echo 'at the bottom' > d/leaf && i=1 && \\
    while [ $i -lt {DEPTH} ]; do mkdir n && mv d n/d && mv n d || exit 1; i=$((i+1)); done
FROM busybox
COPY --from=deep /d /copied/d
"""


@pytest.mark.e2e
@pytest.mark.needs_root
def test_a_run_that_makes_a_deep_tree_then_prune(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, DEEP_RUN)
    builder("build", "-t", "deep", context, timeout=600)
    # Its layers export (flattened through the unpacker) ...
    builder("export", "-o", f"{tmp_path / 'rootfs'}/", "deep")
    assert chain_depth(tmp_path / "rootfs" / "copied") == (DEPTH, LEAF)
    # ... and prune sweeps them once nothing needs them, more than once.
    builder("rmi", "deep")
    freed = builder("prune", "--all").stdout
    assert freed.startswith("freed ") and float(freed.split()[1]) > 0
    builder("prune", "--all")
    assert not list((builder.root / "tmp").iterdir())
    layers = {p.name for p in (builder.root / "layers").iterdir()}
    assert len(layers) == 1  # busybox's own
