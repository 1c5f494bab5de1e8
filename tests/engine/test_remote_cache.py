"""A build cache shared through a directory (type=local): exported from one store, imported
into a fresh one. Every step is CACHED there, the image is the same, and only the blobs the
image needs move; an unusable import is a warning and a normal build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.engine.events import BuildWarning
from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.store import StepRecord, Store
from builder.store.cache_format import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE
from builder.store.cache_sync import CacheExport, CacheImport
from builder.store.cache_transport import LocalCacheDir
from tests.engine.fakes import Effect, FakeExecutor
from tests.engine.support import Built, add_image, image, make_context, run_build

BASE = {"bin/": None, "bin/sh": "#!", "etc/": None, "etc/os": "x" * 300}
SINGLE = "FROM base\nCOPY a /a\nRUN make\nWORKDIR /w\nENV X=1\n"
MULTI = "FROM base AS build\nRUN make\nFROM base\nCOPY --from=build /made /copied\nRUN check\n"


def _fake() -> FakeExecutor:
    fake = FakeExecutor()
    fake.on("make", Effect(files={"/made": "m" * 5000}))
    fake.on("check", Effect(files={"/checked": "ok"}))
    fake.on("after", Effect(files={"/after": "a"}))
    return fake


def _store(path: Path) -> Store:
    store = Store.open(path)
    add_image(store, "base", BASE)
    return store


def _export(
    tmp_path: Path, recipe: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Built, Store, Path]:
    """Build in store A, exporting the cache to a directory."""
    store = _store(tmp_path / "a")
    context = make_context(tmp_path / "ctx", recipe, {"a": "a" * 4000})
    cache = tmp_path / "cache"
    built = run_build(
        store,
        context,
        _fake(),
        monkeypatch,
        cache_to=(CacheExport(LocalCacheDir(cache), mode=mode),),
    )
    return built, store, cache


def _import(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[Built, Store, FakeExecutor]:
    """Build in a fresh store B (it has the base, as a pull would give it), importing."""
    store = _store(tmp_path / "b")
    fake = _fake()
    built = run_build(
        store,
        tmp_path / "ctx",
        fake,
        monkeypatch,
        cache_from=(CacheImport(LocalCacheDir(cache)),),
        **options,
    )
    return built, store, fake


def _blobs(store: Store) -> set[Digest]:
    return set(store.layout.digests())


def _warnings(built: Built) -> list[str]:
    return [e.message for e in built.events if isinstance(e, BuildWarning)]


def _cache_document(cache: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    index = json.loads((cache / "index.json").read_bytes())
    (entry,) = index["manifests"]
    manifest = json.loads((cache / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    config = json.loads((cache / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes())
    return manifest, config


def test_a_fresh_store_builds_every_step_cached_from_an_exported_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    second, b, fake = _import(tmp_path, cache, monkeypatch)
    assert all(second.cached)
    assert fake.runs == [] and fake.calls == []
    assert second.result.image_id == first.result.image_id
    assert second.result.manifest_digest == first.result.manifest_digest
    # The image is whole in B: every layer's blob is there.
    _config, layers = image(b, second)
    assert all(b.layout.has(layer.digest) for layer in layers)


def test_the_cache_is_an_oci_artifact_listing_the_blobs_its_records_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    manifest, config = _cache_document(cache)
    assert manifest["mediaType"] == MediaType.OCI_MANIFEST
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    _cfg, layers = image(a, first)
    new_layers = {str(layer.digest) for layer in layers[1:]}  # COPY, RUN, WORKDIR's mkdir
    assert {layer["digest"] for layer in manifest["layers"]} == new_layers
    assert len(config["records"]) == 3
    for key, record in config["records"].items():
        assert StepRecord.from_json(record) == a.cache.get(key, StepRecord)
    oci_layout = json.loads((cache / "oci-layout").read_bytes())
    assert oci_layout == {"imageLayoutVersion": "1.0.0"}
    for layer in manifest["layers"]:  # the blobs are in the directory, whole
        blob = cache / "blobs/sha256" / layer["digest"][7:]
        assert Digest.of_bytes(blob.read_bytes()) == Digest(layer["digest"])


def test_mode_max_caches_intermediate_stages_without_downloading_their_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, a, cache = _export(tmp_path, MULTI, "max", monkeypatch)
    make_layer = a.cache.get(first.keys[0][1], StepRecord)
    assert make_layer is not None and make_layer.layer is not None
    second, b, fake = _import(tmp_path, cache, monkeypatch)
    assert all(second.cached)
    assert fake.runs == [] and fake.calls == []
    assert second.result.image_id == first.result.image_id
    # Only the final image's blobs came in: the build stage's RUN layer stayed behind.
    _config, layers = image(b, second)
    assert not b.layout.has(make_layer.layer.digest)
    assert {layer.digest for layer in layers} <= _blobs(b)
    assert all(a.layout.has(layer.digest) for layer in layers)


def test_mode_min_leaves_out_the_stages_the_image_is_not_built_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _a, cache = _export(tmp_path, MULTI, "min", monkeypatch)
    _manifest, config = _cache_document(cache)
    run_make_key = first.keys[0][1]
    assert run_make_key not in config["records"]  # the build stage's RUN
    assert len(config["records"]) == 2  # COPY --from and RUN check
    second, _b, fake = _import(tmp_path, cache, monkeypatch)
    # The build stage runs (our stages are built in order), the final stage's steps hit.
    assert [p.argv[-1] for p in fake.runs] == ["make"]
    assert second.cached == [True, False, True, True, True]
    assert second.result.image_id == first.result.image_id


def test_a_changed_file_reruns_from_its_copy_and_fetches_the_lower_it_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = "FROM base\nRUN make\nCOPY a /a\nRUN after\n"
    first, a, cache = _export(tmp_path, recipe, "max", monkeypatch)
    make = a.cache.get(first.keys[0][1], StepRecord)
    assert make is not None and make.layer is not None
    (tmp_path / "ctx" / "a").write_text("changed")
    second, b, fake = _import(tmp_path, cache, monkeypatch)
    assert second.cached == [True, True, False, False]
    assert [p.argv[-1] for p in fake.runs] == ["after"]  # make's result came from the cache
    assert b.layout.has(make.layer.digest)  # fetched: the COPY ran on it
    assert b.layers.has(make.diff_id)
    assert first.result.image_id != second.result.image_id


def test_a_hit_from_an_import_is_kept_in_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    _second, b, _used = _import(tmp_path, cache, monkeypatch)
    third = run_build(b, tmp_path / "ctx", _fake(), monkeypatch)  # no --cache-from now
    assert all(third.cached)
    assert third.result.image_id == first.result.image_id


def test_no_cache_ignores_the_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _first, _a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    second, _b, fake = _import(tmp_path, cache, monkeypatch, no_cache=True)
    assert [p.argv[-1] for p in fake.runs] == ["make"]
    assert not any(second.cached[1:])


def test_records_under_source_date_epoch_are_kept_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path / "a")
    context = make_context(tmp_path / "ctx", SINGLE, {"a": "a"})
    cache = tmp_path / "cache"
    export = CacheExport(LocalCacheDir(cache), mode="min")
    first = run_build(
        store, context, _fake(), monkeypatch, cache_to=(export,), source_date_epoch=1000
    )
    same, _b, fake = _import(tmp_path, cache, monkeypatch, source_date_epoch=1000)
    assert all(same.cached) and fake.runs == []
    assert same.result.image_id == first.result.image_id
    # Without the epoch, the records made under it do not apply.
    store_c = _store(tmp_path / "c")
    fake_c = _fake()
    run_build(
        store_c, context, fake_c, monkeypatch, cache_from=(CacheImport(LocalCacheDir(cache)),)
    )
    assert [p.argv[-1] for p in fake_c.runs] == ["make"]


# -- unusable imports: a warning, and the build goes on as if there were none ---------------


def _assert_built_without_it(built: Built, fake: FakeExecutor, words: str) -> None:
    (warning,) = [w for w in _warnings(built) if "cache import" in w]
    assert words in warning
    assert [p.argv[-1] for p in fake.runs] == ["make"]


def test_a_missing_cache_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_context(tmp_path / "ctx", SINGLE, {"a": "a"})
    built, _b, fake = _import(tmp_path, tmp_path / "nothing", monkeypatch)
    _assert_built_without_it(built, fake, "no cache (no index.json)")


def test_a_malformed_cache_config_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first, _a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    manifest, _config = _cache_document(cache)
    config_blob = cache / "blobs/sha256" / manifest["config"]["digest"][7:]
    bad = json.dumps({"records": {"k" * 64: {"created": 5}}}).encode()
    _rewrite_config(cache, manifest, config_blob, bad)
    built, _b, fake = _import(tmp_path, cache, monkeypatch)
    _assert_built_without_it(built, fake, "'created' must be a string")


def _rewrite_config(cache: Path, manifest: dict[str, Any], old: Path, data: bytes) -> None:
    """Point the cache's manifest at another config (so digests still match)."""
    digest = Digest.of_bytes(data)
    (cache / "blobs/sha256" / digest.hex).write_bytes(data)
    manifest["config"] = Descriptor(CONFIG_MEDIA_TYPE, digest, len(data)).to_json()
    raw = json.dumps(manifest).encode()
    (cache / "blobs/sha256" / Digest.of_bytes(raw).hex).write_bytes(raw)
    index = json.loads((cache / "index.json").read_bytes())
    index["manifests"][0].update(digest=str(Digest.of_bytes(raw)), size=len(raw))
    (cache / "index.json").write_text(json.dumps(index))


def test_an_image_is_not_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _first, _a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    manifest, _config = _cache_document(cache)
    manifest["config"]["mediaType"] = str(MediaType.OCI_CONFIG)
    raw = json.dumps(manifest).encode()
    (cache / "blobs/sha256" / Digest.of_bytes(raw).hex).write_bytes(raw)
    index = json.loads((cache / "index.json").read_bytes())
    index["manifests"][0].update(digest=str(Digest.of_bytes(raw)), size=len(raw))
    (cache / "index.json").write_text(json.dumps(index))
    built, _b, fake = _import(tmp_path, cache, monkeypatch)
    _assert_built_without_it(built, fake, "it is not a builder cache")


def test_a_missing_blob_is_a_warning_and_the_build_starts_again_without_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first, _a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    manifest, _config = _cache_document(cache)
    gone = manifest["layers"][-1]["digest"]
    (cache / "blobs/sha256" / gone[7:]).unlink()
    built, b, fake = _import(tmp_path, cache, monkeypatch)
    _assert_built_without_it(built, fake, f"blob {gone}")
    _config, layers = image(b, built)
    assert all(b.layout.has(layer.digest) for layer in layers)


def test_a_blob_that_does_not_match_its_digest_is_never_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    manifest, _config = _cache_document(cache)
    _image_config, layers = image(a, first)
    copy_layer = str(layers[-3].digest)  # COPY, RUN, WORKDIR: the one the RUN builds on
    (forged,) = [d for d in manifest["layers"] if d["digest"] == copy_layer]
    path = cache / "blobs/sha256" / forged["digest"][7:]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    built, b, fake = _import(tmp_path, cache, monkeypatch)
    _assert_built_without_it(built, fake, "does not match its digest")
    # The COPY ran again and made the genuine blob; the forged bytes never came in.
    blob = b.paths.blob(Digest(forged["digest"]))
    assert not blob.exists() or Digest.of_bytes(blob.read_bytes()) == Digest(forged["digest"])
    assert list(b.paths.tmp.iterdir()) == []


# -- the export: never a half-written cache ---------------------------------------------------


def test_an_export_that_fails_midway_leaves_the_previous_cache_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first, a, cache = _export(tmp_path, SINGLE, "min", monkeypatch)
    before = (cache / "index.json").read_bytes()
    calls = []

    def failing(self: LocalCacheDir, blob: Descriptor, source: Any) -> None:
        calls.append(blob)
        raise StoreError("disk full")

    monkeypatch.setattr(LocalCacheDir, "put_blob", failing)
    (tmp_path / "ctx" / "a").write_text("changed")  # a new COPY layer to send
    with pytest.raises(StoreError, match="disk full"):
        run_build(
            a,
            tmp_path / "ctx",
            _fake(),
            monkeypatch,
            cache_to=(CacheExport(LocalCacheDir(cache), mode="min"),),
        )
    assert calls
    assert (cache / "index.json").read_bytes() == before
    monkeypatch.undo()
    (tmp_path / "ctx" / "a").write_text("a" * 4000)
    second, _b, fake = _import(tmp_path, cache, monkeypatch)
    assert all(second.cached) and fake.runs == []


def test_exporting_an_imported_cache_fetches_only_what_the_destination_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B imports with mode=max and exports again to a new directory: the intermediate RUN's
    blob, never needed by B's build, is fetched for the export."""
    first, a, cache = _export(tmp_path, MULTI, "max", monkeypatch)
    make = a.cache.get(first.keys[0][1], StepRecord)
    assert make is not None and make.layer is not None
    b = _store(tmp_path / "b")
    again = tmp_path / "again"
    run_build(
        b,
        tmp_path / "ctx",
        _fake(),
        monkeypatch,
        cache_from=(CacheImport(LocalCacheDir(cache)),),
        cache_to=(CacheExport(LocalCacheDir(again), mode="max"),),
    )
    assert b.layout.has(make.layer.digest)
    assert _cache_document(again)[1] == _cache_document(cache)[1]
    third, _c, fake = _import(tmp_path, again, monkeypatch)
    assert all(third.cached) and fake.runs == []
