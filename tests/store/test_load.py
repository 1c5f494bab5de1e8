"""load_archive: both archive kinds round-trip; hostile archives are refused whole."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.store import Store
from builder.store.archive import save_oci_archive
from builder.store.docker_archive import save_docker_archive
from builder.store.load import MAX_DOCUMENT, load_archive
from tests.store.support import make_image


def _empty(store: Store) -> None:
    """Nothing of the archive reached the store: no blob, no name, no temp file."""
    assert list(store.paths.blobs.iterdir()) == []
    assert store.layout.index().manifests == ()
    assert list(store.paths.tmp.iterdir()) == []


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out = []
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m, f.read() if f is not None else None))
    return out


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


@pytest.fixture
def source(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "source")
    make_image(store, tmp_path, "one", "one:v1")
    return store


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_round_trip_keeps_the_image_id_and_the_name(
    tmp_path: Path, source: Store, fmt: str
) -> None:
    archive = tmp_path / "a.tar"
    (save_oci_archive if fmt == "oci" else save_docker_archive)(source, ["one:v1"], archive)
    store = Store.open(tmp_path / "dest")
    (loaded,) = load_archive(store, archive)
    assert loaded.names == ("one:v1",)
    image = store.image("one:v1")
    original = source.image("one:v1")
    assert image.id == original.id
    assert [layer.diff_id for layer in image.layers] == [x.diff_id for x in original.layers]
    if fmt == "oci":  # the same blobs: the same manifest
        assert image.digest == original.digest
    # Unpacked by the load itself, as docker load leaves a layer: the first run mounts it.
    assert all(store.layers.has(layer.diff_id) for layer in image.layers)
    for layer in image.layers:  # the layers unpack, checked against their diff_ids
        assert (store.layers.get(layer.blob, layer.diff_id) / "etc" / "msg").read_text() == "one"


def test_a_compressed_archive_and_an_unnamed_image(tmp_path: Path, source: Store) -> None:
    plain = tmp_path / "a.tar"
    save_oci_archive(source, ["one:v1"], plain)
    members = _members(plain)
    for info, data in members:
        if info.name == "index.json":
            assert data is not None
            index = json.loads(data)
            del index["manifests"][0]["annotations"]  # as skopeo writes oci-archive:F
            info.size = len(data)
            members[members.index((info, data))] = (info, json.dumps(index).encode())
    unnamed = _write(tmp_path / "u.tar", members)
    packed = tmp_path / "u.tar.gz"
    packed.write_bytes(gzip.compress(unnamed.read_bytes()))
    store = Store.open(tmp_path / "dest")
    (loaded,) = load_archive(store, packed)
    assert loaded.names == ()
    assert store.image(str(loaded.descriptor.digest)).id == source.image("one:v1").id


def test_docker_save_links_between_layers_are_followed_inside(
    tmp_path: Path, source: Store
) -> None:
    archive = tmp_path / "a.tar"
    save_docker_archive(source, ["one:v1"], archive)
    members = _members(archive)
    layer_name = next(m.name for m, _ in members if m.name.endswith(".tar"))
    link = tarfile.TarInfo("abc/layer.tar")
    link.type, link.linkname = tarfile.SYMTYPE, f"../{layer_name}"
    manifest = json.loads(next(d for m, d in members if m.name == "manifest.json") or b"")
    manifest[0]["Layers"] = ["abc/layer.tar"]
    members = [(m, d) for m, d in members if m.name != "manifest.json"]
    members += [(link, None), _file("manifest.json", json.dumps(manifest).encode())]
    store = Store.open(tmp_path / "dest")
    load_archive(store, _write(tmp_path / "b.tar", members))
    assert store.image("one:v1").id == source.image("one:v1").id


def _oci_with(tmp_path: Path, source: Store, change: str) -> Path:
    """The OCI archive of one:v1 with one hostile change."""
    archive = tmp_path / "a.tar"
    save_oci_archive(source, ["one:v1"], archive)
    image = source.image("one:v1")
    layer = f"blobs/sha256/{image.layers[0].blob.digest.hex}"
    members = _members(archive)
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for info, data in members:
        if change == "corrupt-layer" and info.name == layer:
            assert data is not None
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        if change == "symlinked-index" and info.name == "index.json":
            out.append((tarfile.TarInfo("real-index.json"), data))
            info = tarfile.TarInfo("index.json")
            info.type, info.linkname, data = tarfile.SYMTYPE, "real-index.json", None
        if change == "index-size" and info.name == "index.json":
            index = json.loads(data or b"")
            index["manifests"][0]["size"] = 1 << 40
            data = json.dumps(index).encode()
        out.append((info, data))
    if change == "dotdot":
        out.append(_file("blobs/../../etc/evil", b"x"))
    if change == "absolute":
        out.append(_file("/etc/evil", b"x"))
    if change == "huge-index":
        out = [(m, d) for m, d in out if m.name != "index.json"]
        out.append(_file("index.json", b" " * (MAX_DOCUMENT + 1)))
    return _write(tmp_path / f"{change}.tar", out)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("dotdot", r"'\.\.' in path"),
        ("absolute", "absolute path"),
        ("symlinked-index", "'index.json' is not a regular file"),
        ("corrupt-layer", "content is sha256:"),
        ("index-size", "its descriptor says 1099511627776"),
        ("huge-index", f"more than {MAX_DOCUMENT}"),
    ],
)
def test_hostile_oci_archives_add_nothing(
    tmp_path: Path, source: Store, change: str, message: str
) -> None:
    archive = _oci_with(tmp_path, source, change)
    store = Store.open(tmp_path / "dest")
    with pytest.raises(LayerError, match=message):
        load_archive(store, archive)
    _empty(store)


def test_a_member_larger_than_the_archive_is_refused(tmp_path: Path, source: Store) -> None:
    archive = tmp_path / "a.tar"
    save_docker_archive(source, ["one:v1"], archive)
    data = bytearray(archive.read_bytes())
    # The first member is a layer: forge its size field (octal, 12 bytes at 124) to ~8 GB.
    data[124:136] = b"77777777777\0"
    data[148:156] = b"        "
    data[148:155] = b"%06o\0" % sum(data[:512])
    forged = tmp_path / "forged.tar"
    forged.write_bytes(bytes(data))
    store = Store.open(tmp_path / "dest")
    with pytest.raises(LayerError, match="more bytes than the archive holds"):
        load_archive(store, forged)
    _empty(store)


def test_a_docker_layer_that_is_not_its_diff_id_adds_nothing(tmp_path: Path, source: Store) -> None:
    archive = tmp_path / "a.tar"
    save_docker_archive(source, ["one:v1"], archive)
    members = []
    for info, data in _members(archive):
        if info.name.endswith(".tar"):
            assert data is not None
            data = data.replace(b"one", b"two")  # a valid tar still, other content
        members.append((info, data))
    store = Store.open(tmp_path / "dest")
    with pytest.raises(LayerError, match="its config says sha256:"):
        load_archive(store, _write(tmp_path / "b.tar", members))
    _empty(store)


def test_docker_manifest_json_pointing_outside_is_refused(tmp_path: Path, source: Store) -> None:
    archive = tmp_path / "a.tar"
    save_docker_archive(source, ["one:v1"], archive)
    members = _members(archive)
    manifest = json.loads(next(d for m, d in members if m.name == "manifest.json") or b"")
    manifest[0]["Config"] = "../" + manifest[0]["Config"]
    members = [(m, d) for m, d in members if m.name != "manifest.json"]
    members.append(_file("manifest.json", json.dumps(manifest).encode()))
    store = Store.open(tmp_path / "dest")
    with pytest.raises(LayerError, match=r"'\.\.' in path"):
        load_archive(store, _write(tmp_path / "b.tar", members))
    _empty(store)


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"hello" * 200)
    store = Store.open(tmp_path / "dest")
    with pytest.raises(LayerError, match="not a readable tar archive"):
        load_archive(store, bogus)
    _empty(store)
    assert Digest.of_bytes(b"") not in set(store.layout.digests())
