"""The build cache: typed records; anything malformed is a miss, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.store import JsonRecord, StepRecord, Store

LAYER = Descriptor(MediaType.OCI_LAYER_ZSTD, Digest.of_bytes(b"blob"), 4)
DIFF_ID = Digest.of_bytes(b"tar")
CREATED = "2024-01-01T00:00:00Z"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "s")


def test_step_records_round_trip(store: Store) -> None:
    store.cache.put("with-layer", StepRecord(CREATED, LAYER, DIFF_ID))
    store.cache.put("empty", StepRecord(CREATED))
    assert store.cache.get("with-layer", StepRecord) == StepRecord(CREATED, LAYER, DIFF_ID)
    assert store.cache.get("empty", StepRecord) == StepRecord(CREATED)
    assert store.cache.get("absent", StepRecord) is None
    assert sorted(store.cache.stored_keys()) == ["empty", "with-layer"]


def test_records_are_written_as_before(store: Store) -> None:
    """Byte for byte what earlier versions wrote, so a store's existing cache keeps hitting."""
    store.cache.put("a", StepRecord(CREATED, LAYER, DIFF_ID))
    store.cache.put("b", StepRecord(CREATED))
    assert (store.paths.cache / "a.json").read_text() == (
        f'{{"created":"{CREATED}","diff_id":"{DIFF_ID}","layer":{{"digest":"{LAYER.digest}",'
        f'"mediaType":"{MediaType.OCI_LAYER_ZSTD.value}","size":4}}}}'
    )
    assert (store.paths.cache / "b.json").read_text() == f'{{"created":"{CREATED}","layer":null}}'


GOOD = json.dumps(
    {"created": CREATED, "diff_id": DIFF_ID, "layer": LAYER.to_json()},
    separators=(",", ":"),
    sort_keys=True,
)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(GOOD[: len(GOOD) // 2], id="truncated"),
        pytest.param("", id="empty"),
        pytest.param("not json", id="bad-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"layer": null}', id="no-created"),
        pytest.param('{"created": 5, "layer": null}', id="created-not-a-string"),
        pytest.param(
            f'{{"created":"{CREATED}","layer":{{"x":1}},"diff_id":"{DIFF_ID}"}}',
            id="layer-not-a-descriptor",
        ),
        pytest.param(
            f'{{"created":"{CREATED}","layer":"sha256:00","diff_id":"{DIFF_ID}"}}',
            id="layer-a-string",
        ),
        pytest.param(GOOD.replace(f'"diff_id":"{DIFF_ID}",', ""), id="layer-without-diff-id"),
        pytest.param(GOOD.replace(str(DIFF_ID), "sha256:xyz"), id="bad-diff-id"),
        pytest.param(GOOD.replace(f'"{DIFF_ID}"', "7"), id="diff-id-a-number"),
    ],
)
def test_a_malformed_record_is_a_miss(store: Store, content: str | bytes) -> None:
    (store.paths.cache / "k.json").write_bytes(
        content if isinstance(content, bytes) else content.encode()
    )
    assert store.cache.get("k", StepRecord) is None


def test_the_malformed_set_is_measured_against_a_good_record(store: Store) -> None:
    """The cases above break GOOD one way each; GOOD itself must read, or they prove nothing."""
    (store.paths.cache / "k.json").write_text(GOOD)
    assert store.cache.get("k", StepRecord) == StepRecord(CREATED, LAYER, DIFF_ID)


def test_an_unreadable_record_is_a_miss(store: Store) -> None:
    (store.paths.cache / "k.json").mkdir()  # reading it is an OSError (root reads any file)
    assert store.cache.get("k", StepRecord) is None
    assert store.cache.get("k", JsonRecord) is None


def test_json_records_hold_any_object_and_nothing_else(store: Store) -> None:
    store.cache.put("memo", JsonRecord({"made_ns": 1, "entries": {"a": [1]}}))
    assert store.cache.get("memo", JsonRecord) == JsonRecord({"made_ns": 1, "entries": {"a": [1]}})
    assert store.cache.get("memo", StepRecord) is None  # a memo is not a step
    (store.paths.cache / "list.json").write_text("[]")
    assert store.cache.get("list", JsonRecord) is None


def test_a_step_record_pairs_a_layer_with_its_diff_id() -> None:
    with pytest.raises(ValueError, match="go together"):
        StepRecord(CREATED, LAYER, None)


@pytest.mark.parametrize("key", ["", "../escape", "a/b", ".hidden", "x" * 300])
def test_invalid_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(StoreError, match="invalid cache key"):
        store.cache.put(key, StepRecord(CREATED))
    with pytest.raises(StoreError, match="invalid cache key"):
        store.cache.get(key, StepRecord)


def test_delete_and_clear(store: Store) -> None:
    store.cache.put("a", StepRecord(CREATED))
    store.cache.put("b", StepRecord(CREATED))
    assert store.cache.delete("a") > 0 and store.cache.delete("a") == 0
    assert list(store.cache.stored_keys()) == ["b"]
    assert store.cache.clear() > 0
    assert list(store.cache.stored_keys()) == []
