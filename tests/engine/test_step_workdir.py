"""WORKDIR: the config's working directory, and the directory made when it is missing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.store import Store
from tests.engine.fakes import ROOT, FakeExecutor
from tests.engine.support import add_image, image, layer_entries, make_context, run_build

# The empty layer: an empty tar, two zero blocks (docker's diff ID for it, checked live).
EMPTY_TAR = "sha256:" + hashlib.sha256(bytes(1024)).hexdigest()


def test_workdir_makes_the_missing_dirs_as_one_layer(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nWORKDIR /srv/app\nWORKDIR sub\n")
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    assert config.config.working_dir == "/srv/app/sub"  # relative: joined to the last
    first, second = (layer_entries(store, layer) for layer in layers)
    assert set(first) == {"srv", "srv/app"} and first["srv/app"].info.mode == 0o755
    assert set(second) == {"srv", "srv/app", "srv/app/sub"}  # parents copied up, as overlayfs
    assert [h.created_by for h in config.history] == ["WORKDIR /srv/app", "WORKDIR /srv/app/sub"]
    assert fake.calls == ["WORKDIR", "WORKDIR"]


def test_an_existing_workdir_makes_the_empty_layer_without_a_sandbox(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As docker 20.10's (checked against the live daemon): a layer, the empty tar, with a
    history entry that is not empty_layer; the layers show /srv, so no sandbox is started."""
    add_image(store, "base", {"srv/": None})
    context = make_context(tmp_path / "ctx", "FROM base\nWORKDIR /srv\n")
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    assert len(layers) == 2 and layer_entries(store, layers[-1]) == {}
    assert str(config.diff_ids[-1]) == EMPTY_TAR
    assert config.history[-1].created_by == "WORKDIR /srv" and not config.history[-1].empty_layer
    assert config.config.working_dir == "/srv"
    assert fake.calls == []
    again = run_build(store, context, fake, monkeypatch)  # cached too
    assert again.cached == [True, True] and image(store, again)[1] == layers


def test_the_empty_layer_keeps_the_images_root_open(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its dir is the next step's top lower, whose root overlayfs shows as `/`: it has the
    image's root mode and owner, as the sandbox gives an upper dir, not a temp dir's 0700
    (which locked a later USER out of every path)."""
    add_image(store, "base", {"srv/": None})
    base_config, _ = image(
        store, run_build(store, make_context(tmp_path / "b", "FROM base\n"), fake, monkeypatch)
    )
    store.paths.layer(base_config.diff_ids[0]).chmod(0o751)  # (as an image's root may be)
    context = make_context(tmp_path / "ctx", "FROM base\nWORKDIR /srv\n")
    config, _layers = image(store, run_build(store, context, fake, monkeypatch))
    base_root, empty_root = (store.paths.layer(d).stat() for d in config.diff_ids)
    assert (empty_root.st_mode, empty_root.st_uid) == (base_root.st_mode, base_root.st_uid)


def test_workdir_root_makes_no_layer(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuildKit makes nothing for /: an empty_layer entry, as docker's history shows."""
    add_image(store, "base", {"srv/": None})
    context = make_context(tmp_path / "ctx", "FROM base\nWORKDIR /srv\nWORKDIR /\n")
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    assert len(layers) == 2 and config.history[-1].empty_layer
    assert config.config.working_dir == "/" and fake.calls == []


def test_a_record_from_before_the_empty_layer_is_not_used(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store may hold an existing dir's record from when it made no layer: a cached
    build must not give what a --no-cache one no longer does."""
    from builder.store import StepRecord

    add_image(store, "base", {"srv/": None})
    context = make_context(tmp_path / "ctx", "FROM base\nWORKDIR /srv\n")
    built = run_build(store, context, fake, monkeypatch)
    assert built.keys[-1][0] == "WORKDIR /srv"
    store.cache.put(built.keys[-1][1], StepRecord("2020-01-01T00:00:00Z"))  # the old meaning
    again = run_build(store, context, fake, monkeypatch)
    assert len(image(store, again)[1]) == 2


def test_the_dir_belongs_to_the_current_user(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_image(store, "base", {"etc/": None, "etc/passwd": "app:x:1000:1000::/:/bin/sh\n"})
    context = make_context(tmp_path / "ctx", "FROM base\nUSER app\nWORKDIR /home/app\n")
    built = run_build(store, context, fake, monkeypatch)
    _config, layers = image(store, built)
    info = layer_entries(store, layers[-1])["home/app"].info
    if ROOT:  # not root: the fake leaves files ours, as a rootless sandbox would
        assert (info.uid, info.gid) == (1000, 1000)
