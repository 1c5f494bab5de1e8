"""SOURCE_DATE_EPOCH: the same recipe and context give the same image ID in any store, at any
time, with or without the cache; so does `builder import` of the same rootfs.

Every build here happens at a different clock second (a pause between builds) and from a
context (or rootfs) whose mtimes were just renewed, so anything that leaks the clock or the
files' own times into the image makes the IDs differ.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from tests.e2e.support import Builder, make_context

EPOCH = 1_700_000_000
EPOCH_TEXT = "2023-11-14T22:13:20Z"

# A config-only step before any layer (it takes the state's time), COPY, RUN writing files,
# a dir and symlinks (one dangling), the deletion of a base file (a whiteout), a HEALTHCHECK.
RECIPE = """\
FROM busybox:latest
LABEL stage=first
COPY app/ /app/
RUN mkdir -p /data/sub && echo built > /data/sub/file \\
 && ln -s sub/file /data/link && ln -s /missing /data/dangling
RUN rm /etc/group && echo changed >> /app/main.txt
ENV MODE=repro
HEALTHCHECK --interval=5s --timeout=3s CMD cat /data/link
CMD ["cat", "/data/link"]
"""
FILES = {"app/main.txt": "hello\n", "app/conf/settings.ini": "a=1\n"}


def _store(tmp_path: Path, busybox_store: Path, name: str) -> Builder:
    root = tmp_path / name
    shutil.copytree(busybox_store, root, symlinks=True)
    return Builder(root)


def _renew_mtimes(tree: Path) -> None:
    """Give every entry (symlinks too) the current time, as a fresh checkout would."""
    time.sleep(1.1)  # a new clock second: a leaked time shows as a different ID
    now = time.time_ns()
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, ns=(now, now), follow_symlinks=False)


def _build(store: Builder, context: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    return store("build", "-q", *flags, context, env=env).stdout.strip()


def _inspect(store: Builder, name: str) -> dict[str, object]:
    (image,) = json.loads(store("inspect", name).stdout)
    assert isinstance(image, dict)
    return image


def _layer_members(store: Builder, digest: str) -> list[tarfile.TarInfo]:
    blob = (store.root / "layout" / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()
    plain = zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        return tar.getmembers()


def test_build_with_epoch_is_reproducible_across_stores_times_and_cache(
    tmp_path: Path, busybox_store: Path
) -> None:
    context = make_context(tmp_path, RECIPE, FILES)
    first = _store(tmp_path, busybox_store, "first")
    second = _store(tmp_path, busybox_store, "second")

    _renew_mtimes(context)
    from_env = _build(
        first, context, "--no-cache", "-t", "r:1", env={"SOURCE_DATE_EPOCH": str(EPOCH)}
    )
    _renew_mtimes(context)
    from_flag = _build(second, context, "--no-cache", "--source-date-epoch", str(EPOCH))
    assert from_env == from_flag

    # A cached rebuild reuses its own results and gives the same image.
    _renew_mtimes(context)
    rebuilt = first("build", "--progress", "plain", "--source-date-epoch", str(EPOCH), context)
    assert rebuilt.stderr.count("CACHED") >= 7, rebuilt.stderr
    assert from_env in rebuilt.stderr

    # A cache filled without an epoch must not leak its times into a build with one.
    third = _store(tmp_path, busybox_store, "third")
    _renew_mtimes(context)
    clock = _build(third, context)
    assert clock != from_env  # without an epoch the clock shows: this test can tell
    _renew_mtimes(context)
    assert _build(third, context, "--source-date-epoch", str(EPOCH)) == from_env

    image = _inspect(first, "r:1")
    config, manifest = image["Config"], image["Manifest"]
    assert isinstance(config, dict) and isinstance(manifest, dict)
    base = _inspect(first, "busybox:latest")["Config"]
    assert isinstance(base, dict)
    assert config["created"] == EPOCH_TEXT
    base_history = base["history"]
    # The base's history keeps its own times; each entry this build added has the epoch.
    assert config["history"][: len(base_history)] == base_history
    added = config["history"][len(base_history) :]
    assert len(added) == 7 and all(h["created"] == EPOCH_TEXT for h in added)
    assert config["config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "cat /data/link"]
    assert "annotations" not in manifest

    layers = [layer["digest"] for layer in manifest["layers"]][1:]  # the base's is not ours
    members = {m.name: m for digest in layers for m in _layer_members(first, digest)}
    assert {"app/main.txt", "data/link", "data/dangling", "etc/.wh.group"} <= set(members)
    assert members["data/link"].issym() and members["data"].isdir()
    # Everything was made after the epoch, so everything is clamped to it exactly; and no
    # PAX record carries another time (atime, ctime) that could vary.
    assert {m.mtime for m in members.values()} == {EPOCH}
    assert not any(
        key in m.pax_headers for m in members.values() for key in ("atime", "ctime", "mtime")
    )


def test_build_without_epoch_keeps_the_clock(tmp_path: Path, busybox_store: Path) -> None:
    context = make_context(tmp_path, "FROM busybox:latest\nRUN echo x > /x\n")
    store = _store(tmp_path, busybox_store, "store")
    store("build", "-t", "c:1", context, env={"SOURCE_DATE_EPOCH": ""})  # empty: unset
    config = _inspect(store, "c:1")["Config"]
    assert isinstance(config, dict)
    added = config["history"][-1]
    assert added["created"] == config["created"] != EPOCH_TEXT
    assert added["created"][:4] >= "2024"  # today's clock, not 1970 nor an epoch


def test_import_with_epoch_is_reproducible(
    tmp_path: Path, busybox_store: Path, busybox_rootfs: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    digests = []
    for name in ("first", "second"):
        _renew_mtimes(rootfs)
        store = _store(tmp_path, busybox_store, name)
        store("import", "--source-date-epoch", str(EPOCH), rootfs, "imp:1")
        image = _inspect(store, "imp:1")
        digests.append((image["Id"], image["Digest"]))
    assert digests[0] == digests[1]
    config = _inspect(store, "imp:1")["Config"]
    assert isinstance(config, dict)
    assert config["created"] == EPOCH_TEXT and config["history"][0]["created"] == EPOCH_TEXT


def test_flag_wins_over_environment(tmp_path: Path, busybox_store: Path) -> None:
    context = make_context(tmp_path, "FROM busybox:latest\nENV A=1\n")
    store = _store(tmp_path, busybox_store, "store")
    env = {"SOURCE_DATE_EPOCH": "not a number"}  # never read: the flag is given
    store("build", "-t", "f:1", "--source-date-epoch", str(EPOCH), context, env=env)
    config = _inspect(store, "f:1")["Config"]
    assert isinstance(config, dict) and config["created"] == EPOCH_TEXT


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        (("--source-date-epoch", "soon"), None, "--source-date-epoch: 'soon' is not"),
        (("--source-date-epoch", "-1"), None, "--source-date-epoch: '-1' is not"),
        ((), "1.5", "$SOURCE_DATE_EPOCH: '1.5' is not"),
        ((), "99999999999999", "past the year 9999"),
    ],
)
def test_invalid_epoch_is_a_usage_error(
    tmp_path: Path, busybox_store: Path, flag: tuple[str, ...], env: str | None, message: str
) -> None:
    context = make_context(tmp_path, "FROM busybox:latest\n")
    store = _store(tmp_path, busybox_store, "store")
    environ = {"SOURCE_DATE_EPOCH": env} if env is not None else None
    result = store("build", *flag, context, check=False, env=environ)
    assert result.status == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
