"""COPY, ADD and COPY --from: their real writers, run by the fake executor on a plain
merged directory; the layers they make are read back from the store."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from builder.errors import BuildContextError, ImageNotFound, RecipeError, StepFailed
from builder.store import Store
from tests.engine.fakes import ROOT, Effect, FakeExecutor
from tests.engine.support import (
    add_image,
    files_of,
    image,
    layer_entries,
    make_context,
    run_build,
)

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\n"
BASE = {"etc/": None, "etc/passwd": PASSWD, "etc/group": GROUP, "srv/": None, "srv/old": "o"}


@pytest.fixture
def base(store: Store) -> None:
    add_image(store, "base", BASE)


def _last_layer(
    store: Store,
    fake: FakeExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recipe: str,
    files: dict[str, str | bytes] | None = None,
) -> dict[str, bytes | None]:
    context = make_context(tmp_path / "ctx", recipe, files)
    _config, layers = image(store, run_build(store, context, fake, monkeypatch))
    return files_of(store, layers[-1])


def test_copy_writes_context_files_with_their_modes(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY . /app/\n", {"bin/tool": "#!"})
    os.chmod(context / "bin" / "tool", 0o750)
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    entries = layer_entries(store, layers[0])
    assert set(entries) == {"app", "app/Dockerfile", "app/bin", "app/bin/tool"}
    assert entries["app/bin/tool"].data == b"#!"
    assert entries["app/bin/tool"].info.mode == 0o750
    assert config.history[0].created_by == "COPY . /app/ # buildkit"
    assert fake.calls == ["COPY"] and fake.runs == []


def test_copy_onto_an_image_records_only_what_changed(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: None
) -> None:
    layer = _last_layer(store, fake, tmp_path, monkeypatch, "FROM base\nCOPY f /srv/\n", {"f": "F"})
    assert layer == {"srv": None, "srv/f": b"F"}


def test_a_single_file_to_an_existing_dir_goes_inside_it(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: None
) -> None:
    layer = _last_layer(store, fake, tmp_path, monkeypatch, "FROM base\nCOPY f /srv\n", {"f": "F"})
    assert layer["srv/f"] == b"F"
    layer = _last_layer(store, fake, tmp_path, monkeypatch, "FROM base\nCOPY f /new\n", {"f": "F"})
    assert layer == {"new": b"F"}


def test_copy_chmod_and_heredoc(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = "FROM scratch\nCOPY --chmod=0600 f <<EOF /d/\nhello\nEOF\n"
    context = make_context(tmp_path / "ctx", recipe, {"f": "F"})
    _config, layers = image(store, run_build(store, context, fake, monkeypatch))
    entries = layer_entries(store, layers[0])
    assert {n: (e.data, e.info.mode) for n, e in entries.items() if e.info.isfile()} == {
        "d/f": (b"F", 0o600),
        "d/EOF": (b"hello\n", 0o600),
    }


def test_copy_chown_resolves_names_in_the_images_own_files(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: None
) -> None:
    recipe = "FROM base\nCOPY --chown=app:staff f /f\n"
    context = make_context(tmp_path / "ctx", recipe, {"f": "F"})
    _config, layers = image(store, run_build(store, context, fake, monkeypatch))
    info = layer_entries(store, layers[-1])["f"].info
    if ROOT:  # not root: the fake leaves files ours, as a rootless sandbox would
        assert (info.uid, info.gid) == (1000, 50)
    # BuildKit's readUser: a name the image does not know is 0:0, never an error.
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM base\nCOPY --chown=nobody:staff f /f\n")
    _config, layers = image(store, run_build(store, context, fake, monkeypatch))
    info = layer_entries(store, layers[-1])["f"].info
    if ROOT:
        assert (info.uid, info.gid) == (0, 50)


def test_copy_of_a_missing_source_is_a_context_error(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY nope /x\n")
    with pytest.raises(BuildContextError, match=r'Dockerfile:2: .*checksum .*"/nope": not found'):
        run_build(store, context, fake, monkeypatch)
    assert fake.calls == []


def test_copy_key_follows_content_and_mode_not_mtime(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /f\n", {"f": "F"})
    first = run_build(store, context, fake, monkeypatch)
    os.utime(context / "f", (1, 1))
    assert run_build(store, context, fake, monkeypatch).keys == first.keys
    os.chmod(context / "f", 0o600)
    by_mode = run_build(store, context, fake, monkeypatch)
    (context / "f").write_text("G")
    os.chmod(context / "f", 0o644)
    by_content = run_build(store, context, fake, monkeypatch)
    assert len({first.keys[0][1], by_mode.keys[0][1], by_content.keys[0][1]}) == 3


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o640, 1_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_unpacks_a_local_archive_and_copies_other_files(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"pkg.tar.gz": _tar_gz({"lib/a": b"A", "lib/b": b"B"}), "plain": "P"}
    recipe = "FROM scratch\nADD pkg.tar.gz /opt/\nADD plain /opt/plain\n"
    context = make_context(tmp_path / "ctx", recipe, files)
    config, layers = image(store, run_build(store, context, fake, monkeypatch))
    unpacked = layer_entries(store, layers[0])
    assert {n: e.data for n, e in unpacked.items() if e.info.isfile()} == {
        "opt/lib/a": b"A",
        "opt/lib/b": b"B",
    }
    assert unpacked["opt/lib/a"].info.mode == 0o640
    assert files_of(store, layers[1])["opt/plain"] == b"P"
    assert config.history[0].created_by.startswith("ADD pkg.tar.gz /opt/")
    assert fake.calls == ["ADD", "ADD"]


def test_add_from_a_url_is_refused(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nADD https://example.com/x /x\n")
    with pytest.raises(RecipeError, match="URL"):
        run_build(store, context, fake, monkeypatch)


COPY_FROM = """\
FROM base AS src
RUN make
FROM scratch
COPY --from=src /out/bin /usr/bin/tool
COPY --from=src /out/lib* /lib/
COPY --from=src /out /all
"""


def test_copy_from_a_stage_packs_there_and_unpacks_here(
    fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The roots lie below the store: a wildcard in its path must not act as one.
    store = Store.open(tmp_path / "st[o]re")
    add_image(store, "base", BASE)
    fake.on("make", Effect(files={"/out/bin": "B", "/out/liba": "1", "/out/libb": "2"}))
    context = make_context(tmp_path / "ctx", COPY_FROM)
    _config, layers = image(store, run_build(store, context, fake, monkeypatch))
    assert [files_of(store, layer) for layer in layers] == [
        {"usr": None, "usr/bin": None, "usr/bin/tool": b"B"},
        {"lib": None, "lib/liba": b"1", "lib/libb": b"2"},
        {"all": None, "all/bin": b"B", "all/liba": b"1", "all/libb": b"2"},
    ]
    # pack, then unpack, for each COPY --from
    assert fake.calls == ["COPY"] * 6


def test_copy_from_chains_on_the_sources_key(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: None
) -> None:
    fake.on("make", Effect(files={"/out/bin": "B", "/out/liba": "1", "/out/libb": "2"}))
    fake.on("make v2", Effect(files={"/out/bin": "B2", "/out/liba": "1", "/out/libb": "2"}))
    context = make_context(tmp_path / "ctx", COPY_FROM)
    first = run_build(store, context, fake, monkeypatch)
    (context / "Dockerfile").write_text(COPY_FROM.replace("RUN make", "RUN make v2"))
    second = run_build(store, context, fake, monkeypatch)
    assert second.cached[-3:] == [False, False, False]
    assert all(a != b for a, b in zip(first.keys, second.keys, strict=True))


def test_copy_from_an_image_in_the_store_and_from_nothing(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: None
) -> None:
    layer = _last_layer(
        store, fake, tmp_path, monkeypatch, "FROM scratch\nCOPY --from=base /etc/group /g\n"
    )
    assert layer == {"g": GROUP.encode()}
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY --from=nothere /x /x\n")
    with pytest.raises(ImageNotFound, match="no stage of that name"):
        run_build(store, tmp_path / "ctx", fake, monkeypatch)


def test_copy_from_a_missing_path_fails_the_step(
    store: Store, fake: FakeExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: None
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY --from=base /nope /x\n")
    with pytest.raises(StepFailed, match='failed to calculate checksum of ref base: "/nope": not'):
        run_build(store, context, fake, monkeypatch)
    assert list(store.paths.tmp.iterdir()) == []
