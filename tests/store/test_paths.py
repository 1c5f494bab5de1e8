"""The names under a store's root are a format (other tools read root/layout): pinned here."""

from __future__ import annotations

import re
from pathlib import Path

from builder.image.digest import Digest
from builder.store.paths import StorePaths


def test_every_path_under_the_root() -> None:
    p = StorePaths(Path("/s"))
    d = Digest.of_bytes(b"x")
    assert {
        "layout": p.layout,
        "oci-layout": p.oci_layout_file,
        "index": p.index,
        "blobs": p.blobs,
        "blob": p.blob(d),
        "layers": p.layers,
        "layer": p.layer(d),
        "cache": p.cache,
        "containers": p.containers,
        "cache mounts": p.cache_mounts,
        "tmp": p.tmp,
        "lock": p.lock,
        "gc.lock": p.gc_lock,
    } == {
        "layout": Path("/s/layout"),
        "oci-layout": Path("/s/layout/oci-layout"),
        "index": Path("/s/layout/index.json"),
        "blobs": Path("/s/layout/blobs/sha256"),
        "blob": Path(f"/s/layout/blobs/sha256/{d.hex}"),
        "layers": Path("/s/layers"),
        "layer": Path(f"/s/layers/{d.hex}"),
        "cache": Path("/s/cache"),
        "containers": Path("/s/containers"),
        "cache mounts": Path("/s/mounts/cache"),
        "tmp": Path("/s/tmp"),
        "lock": Path("/s/lock"),
        "gc.lock": Path("/s/gc.lock"),
    }
    assert p.made_before_layout == {"lock", "tmp", "layout"}


# A path joined with a store entry's name: `root / "containers"`, `store_root / "mounts"`.
_SPELLED = re.compile(
    r'/\s*"(layout|oci-layout|index\.json|blobs|layers|cache|containers|mounts|tmp|lock|gc\.lock)"'
)


def test_no_other_module_spells_a_store_path() -> None:
    """One place names the paths: hand-spelled ones elsewhere is how `containers/` and
    `mounts/cache/` came to be written out in three packages."""
    builder = Path(__file__).resolve().parents[2] / "builder"
    spelled = [
        f"{path.relative_to(builder)}: {m.group(0)}"
        for path in sorted(builder.rglob("*.py"))
        if path != builder / "store" / "paths.py"
        for m in _SPELLED.finditer(path.read_text())
    ]
    assert spelled == []
