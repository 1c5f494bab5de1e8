"""Mirrors: tried first for pulls, then the registry itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import ImageNotFound
from builder.registry.pull import pull
from builder.registry.settings import HostSettings, Settings
from builder.registry.transport import RetryPolicy
from builder.store import Store
from tests.registry.scripted import FakeImage, Script, digest, serve

QUICK = RetryPolicy(attempts=1, connect_timeout=2, read_timeout=2)


def test_docker_hub_names_come_from_the_mirror(tmp_path: Path) -> None:
    mirror = Script()
    image = FakeImage.make(b"from the mirror")
    image.serve_on(mirror, "library/busybox")
    with serve(mirror) as address:
        settings = Settings((HostSettings("docker.io", mirrors=(address,)),))
        store = Store.open(tmp_path / "store")
        pulled = pull(store, "busybox", settings=settings, policy=QUICK)
    assert pulled.digest == digest(image.manifest)
    assert [name for name, _ in store.layout.refs()] == ["busybox:latest"]


def test_a_mirror_without_the_image_gives_way_to_the_registry(tmp_path: Path) -> None:
    mirror, registry = Script(), Script()
    image = FakeImage.make(b"from the registry")
    image.serve_on(registry, "app")
    with serve(mirror) as mirror_host, serve(registry) as registry_host:
        settings = Settings((HostSettings(registry_host, mirrors=(mirror_host,)),))
        pulled = pull(Store.open(tmp_path / "s"), f"{registry_host}/app", settings=settings)
    assert pulled.digest == digest(image.manifest)
    assert mirror.count("GET /v2/app/manifests/latest") == 1


def test_when_both_fail_the_registry_error_names_the_mirror_too(tmp_path: Path) -> None:
    with serve(Script()) as mirror_host, serve(Script()) as registry_host:
        settings = Settings((HostSettings(registry_host, mirrors=(mirror_host,)),))
        with pytest.raises(ImageNotFound) as caught:
            pull(Store.open(tmp_path / "s"), f"{registry_host}/app", settings=settings)
    assert str(caught.value) == (
        f"no image {registry_host}/app:latest in the registry (mirror {mirror_host} failed too)"
    )
