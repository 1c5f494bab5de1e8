"""store.variants: a layer's blob per (compression, level), found or made by converting,
kept by gc while the layer is reached; a bad record is a miss."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from builder.errors import LayerError, StoreError
from builder.image.compression import LayerCompression
from builder.image.digest import Digest
from builder.image.image import Layer
from builder.image.mediatypes import Compression, MediaType
from builder.layer.compression import compressor, open_decompressed
from builder.store import Store
from tests.store.support import corrupt, make_image

GZIP = LayerCompression(Compression.GZIP)
ZSTD = LayerCompression(Compression.ZSTD)


def _layer(store: Store, tmp: Path, text: str, kind: Compression = Compression.ZSTD) -> Layer:
    src = tmp / f"src-{text}"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "msg").write_text(text * 1000)
    blob, diff_id = store.put_layer(src, kind)
    return Layer(blob, diff_id)


def _plain(store: Store, digest: Digest) -> bytes:
    with store.layout.open(digest) as blob:
        return open_decompressed(blob).read()


def test_a_written_layer_is_recorded_as_its_variant(store_dir: Path, tmp_path: Path) -> None:
    store = Store.open(store_dir)
    layer = _layer(store, tmp_path, "a")
    found = store.variants.get(layer.diff_id, Compression.ZSTD, 3)
    assert found is not None and found.layer == layer.blob
    assert store.variants.get(layer.diff_id, Compression.GZIP, 6) is None
    assert store.variants.blob_for(layer, ZSTD) == layer.blob


def test_asking_for_another_kind_converts_once_then_finds_it(
    store_dir: Path, tmp_path: Path
) -> None:
    store = Store.open(store_dir)
    layer = _layer(store, tmp_path, "b")
    gz = store.variants.blob_for(layer, GZIP)
    assert gz.media_type is MediaType.OCI_LAYER_GZIP and gz.digest != layer.blob.digest
    assert store.paths.blob(gz.digest).read_bytes()[:2] == b"\x1f\x8b"
    assert _plain(store, gz.digest) == _plain(store, layer.blob.digest)
    blobs = set(store.layout.digests())
    assert store.variants.blob_for(layer, GZIP) == gz
    assert set(store.layout.digests()) == blobs  # found, not made again
    # and from the gzip blob back to the zstd one: the same, recorded blob
    assert store.variants.blob_for(Layer(gz, layer.diff_id), ZSTD) == layer.blob


def test_without_force_a_blob_of_the_kind_is_kept_whatever_its_level(
    store_dir: Path, tmp_path: Path
) -> None:
    """As BuildKit keeps an existing blob; a pulled one's level is not known (None)."""
    store = Store.open(store_dir)
    layer = _layer(store, tmp_path, "c", Compression.NONE)
    out = io.BytesIO()
    comp = compressor(out, Compression.GZIP, 1)  # "someone else's" gzip: level 1
    comp.write(_plain(store, layer.blob.digest))
    comp.close()
    pulled = store.layout.put(out.getvalue(), MediaType.OCI_LAYER_GZIP)
    store.variants.record(layer.diff_id, pulled, None)
    as_pulled = Layer(pulled, layer.diff_id)
    assert store.variants.blob_for(as_pulled, GZIP) == pulled
    assert store.variants.blob_for(layer, GZIP) == pulled  # found by kind from the plain one
    assert store.variants.blob_for(as_pulled, LayerCompression(Compression.GZIP, 1)) == pulled
    forced = store.variants.blob_for(as_pulled, LayerCompression(Compression.GZIP, force=True))
    assert forced != pulled and forced == store.variants.convert(layer, Compression.GZIP, 6)
    assert store.variants.blob_for(as_pulled, GZIP) == forced  # the exact level wins now


def test_a_level_is_a_variant_of_its_own(store_dir: Path, tmp_path: Path) -> None:
    store = Store.open(store_dir)
    layer = _layer(store, tmp_path, "d")
    nine = LayerCompression(Compression.ZSTD, 9, force=True)
    leveled = store.variants.blob_for(layer, nine)
    assert leveled.digest != layer.blob.digest
    assert _plain(store, leveled.digest) == _plain(store, layer.blob.digest)
    assert store.variants.blob_for(layer, nine) == leveled
    assert store.variants.blob_for(layer, ZSTD) == layer.blob
    # without force, a zstd blob is a zstd blob: the layer's own is kept
    assert store.variants.blob_for(layer, LayerCompression(Compression.ZSTD, 12)) == layer.blob


def test_bad_records_are_misses(store_dir: Path, tmp_path: Path) -> None:
    store = Store.open(store_dir)
    layer = _layer(store, tmp_path, "e")
    gz = store.variants.blob_for(layer, GZIP)
    record = store.paths.variants / layer.diff_id.hex / "gzip-6.json"
    good = record.read_bytes()
    for bad in (b"", b"{", b"[]", good.replace(b'"level":6', b'"level":"6"')):
        record.write_bytes(bad)
        assert store.variants.get(layer.diff_id, Compression.GZIP, 6) is None
    # a record filed under another layer's name says nothing of that layer
    other = store.paths.variants / ("0" * 64)
    other.mkdir()
    (other / "gzip-6.json").write_bytes(good)
    assert store.variants.get(Digest.from_hex("0" * 64), Compression.GZIP, 6) is None
    record.write_bytes(good)
    store.layout.delete(gz.digest)  # a blob that went: the record is a miss, made anew
    assert store.variants.get(layer.diff_id, Compression.GZIP, 6) is None
    assert store.variants.blob_for(layer, GZIP) == gz and store.layout.has(gz.digest)


def test_a_conversion_checks_its_source_and_writes_nothing_when_it_fails(
    store_dir: Path, tmp_path: Path
) -> None:
    store = Store.open(store_dir)
    layer = _layer(store, tmp_path, "f")
    before = set(store.layout.digests())
    wrong = Layer(layer.blob, Digest.from_hex("1" * 64))
    with pytest.raises(StoreError, match="not its diff_id"):
        store.variants.blob_for(wrong, GZIP)
    corrupt(store, layer.blob.digest)
    with pytest.raises((StoreError, LayerError), match="corrupt"):
        store.variants.blob_for(layer, GZIP)
    assert set(store.layout.digests()) == before
    assert not list(store.paths.tmp.iterdir())
    assert store.variants.get(layer.diff_id, Compression.GZIP, 6) is None


def test_gc_keeps_a_reached_layers_variants_and_drops_the_rest(
    store_dir: Path, tmp_path: Path
) -> None:
    store = Store.open(store_dir)
    keep = make_image(store, tmp_path, "keep", "keep")  # gzip layers
    drop = make_image(store, tmp_path, "drop", "drop")
    (kept,), (dropped,) = keep.layers, drop.layers
    kept_zstd = store.variants.blob_for(kept, ZSTD)
    dropped_zstd = store.variants.blob_for(dropped, ZSTD)
    store.layout.untag("drop")
    store.gc()
    assert store.layout.has(kept_zstd.digest)  # named by no manifest, kept by its record
    assert store.variants.blob_for(kept, ZSTD) == kept_zstd
    assert not store.layout.has(dropped_zstd.digest) and not store.layout.has(dropped.blob.digest)
    assert not (store.paths.variants / dropped.diff_id.hex).exists()
    store.gc(prune_cache=True)  # the variants are a cache: prune drops them, then their blobs
    assert not store.layout.has(kept_zstd.digest) and store.layout.has(kept.blob.digest)
    assert store.variants.get(kept.diff_id, Compression.ZSTD, 3) is None


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"
