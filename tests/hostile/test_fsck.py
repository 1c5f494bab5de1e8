"""`builder fsck [--repair]` on a real store: a flipped byte in each kind of object (a layer
blob, a config, a manifest, an unpacked layer, a cache record; a missing blob) is one line
naming it, exit 6; --repair removes what is broken, exit 0, and leaves a store that
oci-image-tool validates, whose sound images still run and whose broken layers are
unpacked again. Layers not tarred by our writer (a GNU tar import, SOURCE_DATE_EPOCH's
clamped times) are no false alarm."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder.errors import StoreError
from tests.e2e.support import Builder, Result, make_context
from tests.hostile.test_corruption import blob_path, flip

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

# gzip throughout: Debian's oci-image-tool predates zstd layers.
RECIPE = "FROM busybox\nRUN echo hello > /hello\n"


def _build(builder: Builder, tmp_path: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    context = make_context(tmp_path, RECIPE)
    builder("build", "--compression", "gzip", *extra, "-t", "img", context)
    (info,) = json.loads(builder("inspect", "img").stdout)
    return context, info


def _fsck(builder: Builder, *args: str) -> Result:
    out = builder("fsck", *args, check=False)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def _problems(out: Result) -> list[str]:
    assert out.status == StoreError.exit_code, out.stdout + out.stderr
    return out.stdout.splitlines()


def _valid(builder: Builder) -> None:
    validate = ["oci-image-tool", "validate", "--type", "image", str(builder.root / "layout")]
    proc = subprocess.run(validate, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _repaired(builder: Builder) -> list[str]:
    out = _fsck(builder, "--repair")
    assert out.status == 0, out.stdout + out.stderr
    assert _fsck(builder).status == 0
    _valid(builder)
    return out.stdout.splitlines()


def test_a_sound_store_passes(builder: Builder, tmp_path: Path) -> None:
    _build(builder, tmp_path)
    out = _fsck(builder)
    assert out.status == 0 and out.stdout == "", out.stdout + out.stderr
    assert "0 problems" in out.stderr
    report = json.loads(_fsck(builder, "--json").stdout)
    assert report["problems"] == [] and report["checked"]["blob"] >= 5


def test_a_corrupt_layer_blob(builder: Builder, tmp_path: Path) -> None:
    _, info = _build(builder, tmp_path)
    run_layer = info["Manifest"]["layers"][1]["digest"]
    flip(blob_path(builder, run_layer))
    lines = _problems(_fsck(builder))
    assert f"blob {run_layer}: corrupt (content hashes to sha256:" in lines[0]
    assert f"image img:latest: blob {run_layer} is corrupt" in lines
    assert any(line.startswith("cache ") and run_layer in line for line in lines)
    assert not any("busybox" in line for line in lines)
    report = json.loads(_fsck(builder, "--json").stdout)
    assert {p["kind"] for p in report["problems"]} >= {"blob", "image", "cache"}
    repaired = _repaired(builder)
    assert all(line.endswith("(removed)") for line in repaired)
    images = builder("images").stdout
    assert "busybox" in images and "img" not in images
    assert not blob_path(builder, run_layer).exists()
    # The step's cache record went with its blob: the rebuild runs it again.
    rebuilt = builder("build", "--compression", "gzip", "-t", "img", tmp_path / "ctx")
    assert "[2/2] CACHED" not in rebuilt.stderr
    assert builder("run", "--rm", "img", "cat", "/hello").stdout == "hello\n"


@pytest.mark.parametrize("which", ["config", "manifest"])
def test_a_corrupt_document(builder: Builder, tmp_path: Path, which: str) -> None:
    _, info = _build(builder, tmp_path)
    digest = info["Id"] if which == "config" else info["Digest"]
    flip(blob_path(builder, digest), at=0.3)
    lines = _problems(_fsck(builder))
    assert f"blob {digest}: corrupt" in lines[0]
    assert f"image img:latest: blob {digest} is corrupt" in lines
    _repaired(builder)
    assert "img" not in builder("images").stdout


def test_a_missing_blob(builder: Builder, tmp_path: Path) -> None:
    _, info = _build(builder, tmp_path)
    config = info["Id"]
    blob_path(builder, config).unlink()
    assert f"image img:latest: blob {config} is missing" in _problems(_fsck(builder))
    _repaired(builder)


def test_a_corrupt_unpacked_layer(builder: Builder, tmp_path: Path) -> None:
    _, info = _build(builder, tmp_path)
    diff_id = info["Config"]["rootfs"]["diff_ids"][1]
    unpacked = builder.root / "layers" / diff_id.removeprefix("sha256:")
    (unpacked / "hello").write_text("tampered\n")
    lines = _problems(_fsck(builder))
    assert len(lines) == 1 and lines[0].startswith(f"layer {diff_id}: "), lines
    _repaired(builder)
    assert not unpacked.exists()
    # The image is sound: its layer is unpacked again from the blob on next use.
    assert builder("run", "--rm", "img", "cat", "/hello").stdout == "hello\n"
    assert (unpacked / "hello").read_text() == "hello\n"
    assert _fsck(builder).status == 0


def test_a_broken_cache_record(builder: Builder, tmp_path: Path) -> None:
    context, _ = _build(builder, tmp_path)
    records = [p for p in (builder.root / "cache").glob("*.json") if b'"layer"' in p.read_bytes()]
    (record,) = records
    record.write_bytes(record.read_bytes()[:20])  # torn
    lines = _problems(_fsck(builder))
    assert lines == [f"cache {record.stem}: unreadable record" + lines[0].split("record", 1)[1]]
    _repaired(builder)
    assert not record.exists()
    assert "[2/2] CACHED" not in builder("build", "--compression", "gzip", context).stderr


def _oci_archive(path: Path, rootfs: Path) -> Path:
    """An OCI archive whose one layer GNU tar wrote (its order and headers, not ours)."""
    layout = path.parent / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    tar = subprocess.run(["tar", "-cf", "-", "-C", rootfs, "."], capture_output=True, check=True)
    diff_id = "sha256:" + hashlib.sha256(tar.stdout).hexdigest()
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
    layer |= put(gzip.compress(tar.stdout))
    config = {"architecture": "amd64", "os": "linux", "config": {}}
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    manifest: dict[str, Any] = {"schemaVersion": 2}
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json"}
    manifest["config"] |= put(json.dumps(config).encode())
    manifest["layers"] = [layer]
    entry = {"mediaType": manifest["mediaType"], **put(json.dumps(manifest).encode())}
    entry["annotations"] = {"org.opencontainers.image.ref.name": "gnutar:latest"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    subprocess.run(["tar", "-cf", path, "-C", layout, "."], check=True)
    return path


def test_layers_from_other_writers_are_no_false_alarm(
    builder: Builder, tmp_path: Path, busybox_rootfs: Path
) -> None:
    # SOURCE_DATE_EPOCH clamps the blob's times, not those of the adopted dir.
    _build(builder, tmp_path, "--source-date-epoch", "1000000")
    builder("load", "-i", _oci_archive(tmp_path / "gnu" / "a.tar", busybox_rootfs))
    builder("run", "--rm", "gnutar", "true")  # unpacks it
    out = _fsck(builder)
    assert out.status == 0, out.stdout + out.stderr


def test_a_broken_index_and_layout_file(builder: Builder, tmp_path: Path) -> None:
    _build(builder, tmp_path)
    layout = builder.root / "layout"
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [')  # torn
    (layout / "oci-layout").write_text("{}")
    lines = _problems(_fsck(builder))
    assert lines[0] == "index oci-layout: imageLayoutVersion is None, not '1.0.0'"
    assert lines[1].startswith("index index.json: ") and "unreadable" in lines[1]
    _repaired(builder)  # every name is lost with the index; the layout is valid again
    assert builder("images").stdout.splitlines()[1:] == []


def test_repair_waits_for_no_build(builder: Builder, tmp_path: Path) -> None:
    from builder.store import Store

    _build(builder, tmp_path)
    with Store.open(builder.root).lease():  # as a running build holds it
        out = _fsck(builder, "--repair")
    assert out.status == StoreError.exit_code
    assert "run `builder fsck --repair` again when it ends" in out.stderr
