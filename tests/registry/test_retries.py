"""Retries and refusals, against a scripted server: what a flaky or lying registry gets."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from builder.errors import ImageNotFound, RegistryError
from builder.registry.pull import pull
from builder.registry.settings import Settings
from builder.registry.transport import RetryPolicy
from builder.store import Store
from tests.registry.scripted import Answer, FakeImage, Script, digest

QUICK = RetryPolicy(
    attempts=3, first_delay=0.01, max_delay=0.05, deadline=5, connect_timeout=2, read_timeout=2
)
LAYER = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


def _pull(store: Store, name: str) -> None:
    pull(store, name, settings=Settings(), policy=QUICK)


def _snapshot(store: Store) -> tuple[str, list[str], list[str]]:
    """index.json, the blobs, and tmp/: what a failed pull must leave as it found them."""
    index = hashlib.sha256(store.paths.index.read_bytes()).hexdigest()
    blobs = sorted(p.name for p in store.paths.blobs.iterdir())
    return index, blobs, sorted(p.name for p in store.paths.tmp.iterdir())


def test_a_500_then_success_is_retried(script: Script, host: str, store: Store) -> None:
    image = FakeImage.make(LAYER)
    image.serve_on(script, "app")
    route = "GET /v2/app/manifests/latest"
    ok = Answer(200, image.manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    script.on(route, [Answer(500), ok])
    _pull(store, f"{host}/app")
    assert script.count(route) == 2
    assert store.image(f"{host}/app:latest").digest == digest(image.manifest)


def test_a_429_is_retried_after_the_pause_it_asks_for(
    script: Script, host: str, store: Store
) -> None:
    image = FakeImage.make(LAYER)
    image.serve_on(script, "app")
    route = f"GET /v2/app/blobs/{digest(image.layer)}"
    script.on(route, [Answer(429, headers={"Retry-After": "0"}), Answer(200, image.layer)])
    _pull(store, f"{host}/app")
    assert script.count(route) == 2
    assert store.layout.read(store.image(f"{host}/app").manifest.layers[0].digest) == LAYER


def test_a_registry_that_keeps_failing_is_given_up_with_a_clear_error(
    script: Script, host: str, store: Store
) -> None:
    script.on("GET /v2/app/manifests/latest", Answer(503))
    before = _snapshot(store)
    with pytest.raises(RegistryError, match=r"answered 503 .* \(gave up after 3 attempts in"):
        _pull(store, f"{host}/app")
    assert script.count("GET /v2/app/manifests/latest") == 3
    assert _snapshot(store) == before


def test_a_truncated_blob_is_fetched_again_and_stored_whole(
    script: Script, host: str, store: Store
) -> None:
    image = FakeImage.make(LAYER)
    image.serve_on(script, "app")
    route = f"GET /v2/app/blobs/{digest(image.layer)}"
    script.on(route, [Answer(200, LAYER[:1000], length=len(LAYER)), Answer(200, LAYER)])
    _pull(store, f"{host}/app")
    assert script.count(route) == 2
    assert store.layout.read(store.image(f"{host}/app").manifest.layers[0].digest) == LAYER
    assert list(store.paths.tmp.iterdir()) == []


def test_a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_stored(
    script: Script, host: str, store: Store
) -> None:
    image = FakeImage.make(LAYER)
    image.serve_on(script, "app")
    forged = bytes(reversed(LAYER))  # the same size, other bytes
    script.on(f"GET /v2/app/blobs/{digest(image.layer)}", Answer(200, forged))
    before = _snapshot(store)
    with pytest.raises(RegistryError, match="does not match its digest"):
        _pull(store, f"{host}/app")
    # The config blob came in whole before the layer failed: the pull took it out again.
    assert _snapshot(store) == before


def test_a_blob_longer_than_its_descriptor_is_refused(
    script: Script, host: str, store: Store
) -> None:
    image = FakeImage.make(LAYER)
    image.serve_on(script, "app")
    script.on(f"GET /v2/app/blobs/{digest(image.layer)}", Answer(200, LAYER + b"extra"))
    with pytest.raises(RegistryError, match=f"more than its {len(LAYER)} bytes"):
        _pull(store, f"{host}/app")


def test_a_manifest_that_does_not_match_the_announced_digest_is_refused(
    script: Script, host: str, store: Store
) -> None:
    image = FakeImage.make(LAYER)
    image.serve_on(script, "app")
    headers = {"Docker-Content-Digest": digest(b"something else")}
    script.on("GET /v2/app/manifests/latest", Answer(200, image.manifest, headers))
    before = _snapshot(store)
    with pytest.raises(RegistryError, match="does not match its digest"):
        _pull(store, f"{host}/app")
    assert _snapshot(store) == before


def test_a_manifest_asked_for_by_digest_must_hash_to_it(
    script: Script, host: str, store: Store
) -> None:
    image = FakeImage.make(LAYER)
    wanted = digest(b"another manifest")
    script.on(f"GET /v2/app/manifests/{wanted}", Answer(200, image.manifest))
    with pytest.raises(RegistryError, match=f"does not match its digest {wanted}"):
        _pull(store, f"{host}/app@{wanted}")


def test_a_404_manifest_is_a_missing_image(script: Script, host: str, store: Store) -> None:
    with pytest.raises(ImageNotFound, match=f"no image {host}/app:v1 in the registry"):
        _pull(store, f"{host}/app:v1")


def test_a_schema1_manifest_is_refused_clearly(script: Script, host: str, store: Store) -> None:
    body = b'{"schemaVersion": 1, "name": "app", "tag": "latest", "fsLayers": []}'
    headers = {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}
    script.on("GET /v2/app/manifests/latest", Answer(200, body, headers))
    with pytest.raises(RegistryError, match="Docker schema 1 manifest, which is not supported"):
        _pull(store, f"{host}/app")


def test_a_refused_connection_is_retried_then_named(store: Store) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(RegistryError) as caught:
            _pull(store, f"127.0.0.1:{port}/app")
    assert str(caught.value) == (
        f"cannot reach registry 127.0.0.1:{port}: connection refused"
        f" (gave up after 3 attempts in {str(caught.value).split(' in ')[-1]}"
    )


def test_an_unknown_host_is_named_at_once(store: Store) -> None:
    with pytest.raises(
        RegistryError, match=r"^cannot reach registry nohost\.invalid: unknown host"
    ):
        _pull(store, "nohost.invalid/app")


def test_a_registry_that_does_not_answer_in_time_is_a_timeout(store: Store) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # accepts connections, never answers
        port = s.getsockname()[1]
        policy = RetryPolicy(
            attempts=2, first_delay=0.01, deadline=5, connect_timeout=0.3, read_timeout=0.3
        )
        with pytest.raises(RegistryError, match=r"did not answer in time \(gave up after 2"):
            pull(
                Store.open(store.root), f"127.0.0.1:{port}/app", settings=Settings(), policy=policy
            )


def test_the_timeout_comes_from_the_environment() -> None:
    policy = RetryPolicy.from_env({"BUILDER_REGISTRY_TIMEOUT": "2"})
    assert (policy.deadline, policy.read_timeout, policy.connect_timeout) == (2.0, 2.0, 2.0)
    assert RetryPolicy.from_env({}) == RetryPolicy()
    with pytest.raises(RegistryError, match="expected a positive number of seconds"):
        RetryPolicy.from_env({"BUILDER_REGISTRY_TIMEOUT": "-1"})
