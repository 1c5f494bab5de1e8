"""The images a build starts from: the store's, else the puller's (the CLI's registry client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.engine.engine import build
from builder.engine.options import BuildOptions
from builder.errors import ImageNotFound, RegistryError
from builder.image.config import DEFAULT_PATH, ContainerConfig
from builder.image.image import Image
from builder.store import Store
from tests.engine.fakes import FakeExecutor
from tests.engine.support import add_image, make_context


class FakePuller:
    """Stands for a registry: 'pulling' NAME tags the registry's current image in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.asked: list[str] = []
        self.env = "FROM=registry"

    def __call__(self, name: str) -> Image:
        self.asked.append(name)
        if name.startswith("missing"):
            raise ImageNotFound(f"no image docker.io/library/{name} in the registry")
        if name.startswith("down"):
            raise RegistryError("cannot reach registry docker.io: connection refused")
        add_image(self.store, name, {"f": "x"}, ContainerConfig(env=(self.env,)))
        return self.store.image(name)


def _build(
    store: Store, tmp_path: Path, recipe: str, puller: FakePuller | None, *, pull: bool = False
) -> Image:
    context = make_context(tmp_path / "ctx", recipe)
    options = BuildOptions(context=context, tags=("out",), compression="gzip", pull=pull)
    build(options, store, executor=FakeExecutor(), puller=puller)
    return store.image("out")


def test_a_missing_base_is_pulled(store: Store, tmp_path: Path) -> None:
    puller = FakePuller(store)
    built = _build(store, tmp_path, "FROM base:1\n", puller)
    assert puller.asked == ["base:1"]
    assert built.config.config.env == ("FROM=registry", f"PATH={DEFAULT_PATH}")


def test_a_base_in_the_store_is_used_without_asking(store: Store, tmp_path: Path) -> None:
    add_image(store, "base:1", {"f": "x"}, ContainerConfig(env=("FROM=store",)))
    puller = FakePuller(store)
    built = _build(store, tmp_path, "FROM base:1\n", puller)
    assert puller.asked == []
    assert built.config.config.env == ("FROM=store", f"PATH={DEFAULT_PATH}")


def test_pull_asks_again_once_per_build_and_uses_the_newer(store: Store, tmp_path: Path) -> None:
    add_image(store, "base:1", {"f": "x"}, ContainerConfig(env=("FROM=store",)))
    puller = FakePuller(store)
    recipe = "FROM base:1 AS a\nFROM base:1\nCOPY --from=a /f /g\n"
    built = _build(store, tmp_path, recipe, puller, pull=True)
    assert puller.asked == ["base:1"]
    assert built.config.config.env == ("FROM=registry", f"PATH={DEFAULT_PATH}")


def test_a_pinned_digest_in_the_store_is_not_asked_for_even_with_pull(
    store: Store, tmp_path: Path
) -> None:
    desc = add_image(store, "base:1", {"f": "x"})
    pinned = f"base@{desc.digest}"
    store.layout.tag(pinned, desc)
    puller = FakePuller(store)
    _build(store, tmp_path, f"FROM {pinned}\n", puller, pull=True)
    assert puller.asked == []


def test_copy_from_an_image_pulls_it_too(store: Store, tmp_path: Path) -> None:
    puller = FakePuller(store)
    _build(store, tmp_path, "FROM scratch\nCOPY --from=tools:2 /f /f\n", puller)
    assert puller.asked == ["tools:2"]


def test_registry_failures_say_which_from(store: Store, tmp_path: Path) -> None:
    puller = FakePuller(store)
    with pytest.raises(ImageNotFound) as missing:
        _build(store, tmp_path / "a", "FROM missing:1\n", puller)
    assert str(missing.value) == (
        "Dockerfile:1: FROM missing:1: no image docker.io/library/missing:1 in the registry"
    )
    with pytest.raises(RegistryError) as down:
        _build(store, tmp_path / "b", "FROM down:1\n", puller)
    assert str(down.value) == (
        "Dockerfile:1: FROM down:1: cannot reach registry docker.io: connection refused"
    )


def test_without_a_puller_a_missing_base_is_a_store_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="no such image in the store"):
        _build(store, tmp_path, "FROM base:1\n", None)
