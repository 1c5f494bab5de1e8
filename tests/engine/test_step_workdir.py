"""WORKDIR: the config's working directory, and the directory made when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.store import Store
from tests.engine.fakes import ROOT, FakeExecutor
from tests.engine.support import add_image, image, layer_entries, make_context, run_build


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


def test_an_existing_workdir_makes_no_layer(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_image(store, "base", {"srv/": None})
    context = make_context(tmp_path / "ctx", "FROM base\nWORKDIR /srv\n")
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    assert len(layers) == 1  # the base's
    assert config.history[-1].created_by == "WORKDIR /srv" and config.history[-1].empty_layer
    assert config.config.working_dir == "/srv"
    again = run_build(store, context, fake, monkeypatch)  # the empty result is cached too
    assert again.cached == [True, True]
    assert fake.calls == []  # the layers show /srv: no sandbox is started to find out


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
