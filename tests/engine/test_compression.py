"""The compression a build asks for holds for every layer of its image: the new ones, the
cached ones and the base's. The cache and the image ID do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.image.compression import LayerCompression
from builder.image.descriptor import Descriptor
from builder.image.mediatypes import Compression, MediaType
from builder.layer.compression import open_decompressed
from builder.store import Store
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import Built, add_image, image, make_context, run_build

RECIPE = "FROM base\nCOPY a /a\nRUN make\nWORKDIR /w\nENV X=1\n"
MAGIC = {
    MediaType.OCI_LAYER_GZIP: b"\x1f\x8b",
    MediaType.OCI_LAYER_ZSTD: b"\x28\xb5\x2f\xfd",
    MediaType.OCI_LAYER: b"",
}


@pytest.fixture
def context(store: Store, fake: FakeExecutor, tmp_path: Path) -> Path:
    fake.on("make", Effect(files={"/made": "m" * 5000}))
    add_image(store, "base", {"bin/": None, "bin/sh": "#!", "etc/": None, "etc/os": "x" * 3000})
    return make_context(tmp_path / "ctx", RECIPE, {"a": "a" * 4000})


def _layers(store: Store, built: Built) -> tuple[Descriptor, ...]:
    """The layers of the image the build tagged (give each build its own tag to compare)."""
    return image(store, built)[1]


def _kinds(store: Store, layers: tuple[Descriptor, ...]) -> list[MediaType | str]:
    """Each layer's media type, checked against the first bytes of its blob."""
    for layer in layers:
        head = store.paths.blob(layer.digest).read_bytes()[:4]
        assert isinstance(layer.media_type, MediaType)
        assert head.startswith(MAGIC[layer.media_type]), (layer, head)
        if layer.media_type is MediaType.OCI_LAYER:  # a plain tar starts with a name
            assert head[:2] not in (b"\x1f\x8b", b"\x28\xb5")
    return [layer.media_type for layer in layers]


def _tars(store: Store, layers: tuple[Descriptor, ...]) -> list[bytes]:
    out = []
    for layer in layers:
        with store.layout.open(layer.digest) as blob:
            out.append(open_decompressed(blob).read())
    return out


def test_gzip_after_zstd_gives_only_gzip_layers_and_the_same_image(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zstd = run_build(store, context, fake, monkeypatch, compression="zstd", tags=("z",))
    gzip = run_build(store, context, fake, monkeypatch, compression="gzip", tags=("g",))
    assert all(gzip.cached) and len(fake.runs) == 1  # one cache entry for both
    assert gzip.keys == zstd.keys  # the cache key knows no compression
    assert gzip.result.image_id == zstd.result.image_id  # the config names diff IDs only
    assert gzip.result.manifest_digest != zstd.result.manifest_digest
    zstd_layers, gzip_layers = _layers(store, zstd), _layers(store, gzip)
    # the base's plain layer, COPY's, RUN's and WORKDIR's
    assert _kinds(store, zstd_layers) == [MediaType.OCI_LAYER_ZSTD] * 4
    assert _kinds(store, gzip_layers) == [MediaType.OCI_LAYER_GZIP] * 4
    assert _tars(store, gzip_layers) == _tars(store, zstd_layers)


def test_back_and_forth_gives_the_same_blobs_and_converts_once(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_build(store, context, fake, monkeypatch, compression="zstd")
    run_build(store, context, fake, monkeypatch, compression="gzip")
    blobs = set(store.layout.digests())
    again = run_build(store, context, fake, monkeypatch, compression="zstd")
    assert again.result.manifest_digest == first.result.manifest_digest
    run_build(store, context, fake, monkeypatch, compression="gzip")
    assert set(store.layout.digests()) == blobs  # every variant found, none made again


def test_a_converted_layer_is_the_blob_a_fresh_build_writes(
    fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Determinism: zstd-then-converted and gzip-from-the-start give the same gzip image,
    in two stores (SOURCE_DATE_EPOCH fixes the files' times, which the tars hold)."""
    fake.on("make", Effect(files={"/made": "m" * 5000}))
    digests = []
    for name, first in (("one", "zstd"), ("two", "gzip")):
        store = Store.open(tmp_path / name)
        add_image(store, "base", {"etc/": None, "etc/os": "x" * 3000})
        context = make_context(tmp_path / f"ctx-{name}", RECIPE, {"a": "a" * 4000})
        sde = {"source_date_epoch": 1_700_000_000}
        run_build(store, context, fake, monkeypatch, compression=first, **sde)
        built = run_build(store, context, fake, monkeypatch, compression="gzip", **sde)
        digests.append(built.result.manifest_digest)
    assert digests[0] == digests[1]


def test_force_and_level_make_other_blobs_of_the_same_layers(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zstd = run_build(store, context, fake, monkeypatch, compression="zstd", tags=("z",))
    # Without force, a layer already in zstd keeps its blob whatever level is asked.
    nine = LayerCompression(Compression.ZSTD, 9)
    kept = run_build(store, context, fake, monkeypatch, compression=nine)
    assert kept.result.manifest_digest == zstd.result.manifest_digest
    forced = LayerCompression(Compression.ZSTD, 9, force=True)
    redone = run_build(store, context, fake, monkeypatch, compression=forced, tags=("f",))
    assert redone.result.image_id == zstd.result.image_id  # the same diff IDs
    before, after = _layers(store, zstd), _layers(store, redone)
    assert all(a.digest != b.digest for a, b in zip(before, after, strict=True))
    assert _kinds(store, after) == [MediaType.OCI_LAYER_ZSTD] * 4
    assert _tars(store, after) == _tars(store, before)
    # the level-9 variants are now found, so the level is honoured without force too
    again = run_build(store, context, fake, monkeypatch, compression=nine)
    assert again.result.manifest_digest == redone.result.manifest_digest


def test_force_redoes_a_base_blob_of_the_asked_kind(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base is gzip at level 1 (as if pulled, level unknown): kept without force, made
    ours (level 6) with it."""
    base = store.image("base")
    (layer,) = base.layers
    level1 = store.variants.convert(layer, Compression.GZIP, 1)
    store.variants.delete(layer.diff_id)  # as pulled: nothing recorded
    store.layout.tag("base", store.write_image(base.config, (level1,)).descriptor)
    plain = run_build(store, context, fake, monkeypatch, compression="gzip")
    assert _layers(store, plain)[0] == level1
    gz = LayerCompression(Compression.GZIP, force=True)
    forced = run_build(store, context, fake, monkeypatch, compression=gz)
    ours = _layers(store, forced)[0]
    assert ours.digest != level1.digest and _kinds(store, (ours,)) == [MediaType.OCI_LAYER_GZIP]
    assert ours == store.variants.convert(layer, Compression.GZIP, 6)
    assert forced.result.image_id == plain.result.image_id


def test_uncompressed_is_honoured_too(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_build(store, context, fake, monkeypatch, compression="zstd")
    plain = run_build(store, context, fake, monkeypatch, compression="uncompressed")
    assert _kinds(store, _layers(store, plain)) == [MediaType.OCI_LAYER] * 4


def test_without_a_request_reused_layers_keep_their_blobs(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default, as BuildKit's: new layers zstd, cached and base layers as they are."""
    run_build(store, context, fake, monkeypatch, compression="gzip")
    fake.on("more", Effect(files={"/more": "x"}))
    more = make_context(context.parent / "ctx2", RECIPE + "RUN more\n", {"a": "a" * 4000})
    built = run_build(store, more, fake, monkeypatch, compression=None)
    assert _kinds(store, _layers(store, built)) == [MediaType.OCI_LAYER] + [
        MediaType.OCI_LAYER_GZIP
    ] * 3 + [MediaType.OCI_LAYER_ZSTD]


def test_a_cached_build_whose_variants_exist_loads_no_compressor(
    store: Store, fake: FakeExecutor, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding a variant reads a record; only making one loads the converter and zstd. (The
    cache's records name the zstd blobs: the gzip ones are found through the variants.)"""
    run_build(store, context, fake, monkeypatch, compression="zstd")
    run_build(store, context, fake, monkeypatch, compression="gzip")
    probe = f"""
import sys
import os
import subprocess
import sys
from pathlib import Path
from builder.engine.engine import build
from builder.engine.options import BuildOptions
from builder.store import Store
result = build(BuildOptions(context=Path({str(context)!r}), compression="gzip"),
               Store.open(Path({str(store.root)!r})))
assert result.cached_steps == result.steps, result
print(sorted(m for m in sys.modules if m.startswith(("zstandard", "builder.layer.recompress"))))
"""
    path = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"
