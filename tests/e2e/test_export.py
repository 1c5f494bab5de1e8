"""Every export format read by its real consumer: skopeo (oci-archive, docker-archive, and a
registry for Docker media types), tar (the flattened rootfs), podman load; and load of what
skopeo writes, then run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.e2e.support import Builder, make_context

# The second RUN deletes a file and replaces a dir: its layer holds `.wh.gone` and an opaque
# `data/` (overlayfs marks a dir made where one was removed opaque).
RECIPE = """\
FROM busybox
RUN mkdir -p /data/old /keep && echo a > /data/old/f && echo x > /gone && echo k > /keep/k
RUN rm /gone && rm -rf /data && mkdir -p /data/new && echo b > /data/new/g
"""


def _skopeo(*args: str) -> str:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def _inspect(builder: Builder, name: str) -> dict[str, object]:
    info = json.loads(builder("inspect", name).stdout)[0]
    assert isinstance(info, dict)
    return info


def _cli_bytes(builder: Builder, *args: str | Path) -> bytes:
    """The CLI's stdout as bytes (an archive on stdout is no text)."""
    proc = subprocess.run(
        [sys.executable, "-m", "builder", "--root", str(builder.root), *map(str, args)],
        capture_output=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _layer_names(archive: Path) -> set[str]:
    """Every entry name of every layer of a docker archive."""
    names: set[str] = set()
    with tarfile.open(archive) as outer:
        for m in outer.getmembers():
            if m.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(m)) as layer:
                    names.update(layer.getnames())
    return names


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
    }


def test_every_output_of_one_build(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, RECIPE)
    out = tmp_path / "out"
    out.mkdir()
    builder(
        "build", "-t", "exp:1", "--metadata-file", out / "meta.json",
        "-o", f"type=tar,dest={out}/root.tar", "-o", f"type=local,dest={out}/rootdir",
        "-o", f"type=oci,dest={out}/img.oci", "-o", f"type=docker,dest={out}/img.docker",
        context,
    )  # fmt: skip
    ours = _inspect(builder, "exp:1")
    config = ours["Config"]
    assert isinstance(config, dict)
    diff_ids = config["rootfs"]["diff_ids"]

    # oci-archive: skopeo finds the same manifest
    assert json.loads(_skopeo("inspect", f"oci-archive:{out}/img.oci"))["Digest"] == ours["Digest"]
    # docker-archive: the same config (image ID) and the same layers (uncompressed: diff_ids)
    info = json.loads(_skopeo("inspect", f"docker-archive:{out}/img.docker"))
    assert info["Layers"] == diff_ids
    raw_config = subprocess.run(
        ["skopeo", "inspect", "--config", "--raw", f"docker-archive:{out}/img.docker"],
        capture_output=True,
        check=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw_config).hexdigest() == ours["Id"]
    # the layers did record the deletions, so the rootfs checks below mean something
    recorded = _layer_names(out / "img.docker")
    assert {".wh.gone", "data/.wh..wh..opq", "data/old/f", "gone"} <= recorded

    # the rootfs tar, as tar reads it: whiteouts applied
    listing = subprocess.run(
        ["tar", "-tf", str(out / "root.tar")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    names = {n.rstrip("/") for n in listing}
    assert {"keep/k", "data/new/g", "bin/busybox"} <= names
    assert not names & {"gone", "data/old", "data/old/f"}
    assert not [n for n in names if ".wh." in n]
    # the directory holds what the tar holds
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(out / "root.tar"), "-C", str(unpacked)], check=True)
    assert _tree(out / "rootdir") == _tree(unpacked)
    assert (out / "rootdir" / "data" / "new" / "g").read_text() == "b\n"

    # the metadata file: buildx's keys, agreeing with inspect
    meta = json.loads((out / "meta.json").read_text())
    assert meta == {
        "containerimage.config.digest": ours["Id"],
        "containerimage.digest": ours["Digest"],
        "containerimage.descriptor": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": ours["Digest"],
            "size": len(
                subprocess.run(
                    ["skopeo", "inspect", "--raw", f"oci-archive:{out}/img.oci"],
                    capture_output=True,
                    check=True,
                ).stdout
            ),
            "platform": {"architecture": config["architecture"], "os": "linux"},
        },
        "image.name": "docker.io/library/exp:1",
    }
    assert sorted(os.listdir(out)) == ["img.docker", "img.oci", "meta.json", "root.tar", "rootdir"]


def test_the_rootfs_tar_is_the_same_bytes_each_time_and_goes_to_stdout(
    builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, RECIPE)
    first = _cli_bytes(builder, "build", "-o", "-", context)
    again = _cli_bytes(builder, "build", "-o", "type=tar,dest=-", context)
    assert first == again and first[257:262] == b"ustar"
    builder("build", "-t", "exp:1", context)
    assert _cli_bytes(builder, "export", "exp:1", "-o", "-") == first
    builder("export", "exp:1", "-o", tmp_path / "root.tar")
    assert (tmp_path / "root.tar").read_bytes() == first
    builder("export", "exp:1", "-o", f"{tmp_path}/dir/")
    assert (tmp_path / "dir" / "keep" / "k").read_text() == "k\n"
    archive = _cli_bytes(builder, "save", "exp:1", "-o", "-", "--format", "docker")
    (tmp_path / "saved.tar").write_bytes(archive)
    assert json.loads(_skopeo("inspect", f"docker-archive:{tmp_path}/saved.tar"))["Layers"]


def test_a_missing_output_dir_fails_before_the_build(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, RECIPE)
    result = builder("build", "-t", "x", "-o", f"type=oci,dest={tmp_path}/no/x.tar", context,
                     check=False)  # fmt: skip
    assert result.status == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --output dest={tmp_path}/no/x.tar: the directory {tmp_path}/no does not exist"
    ]
    assert "x:latest" not in builder("images").stdout
    result = builder("export", "busybox", "-o", tmp_path / "no" / "x.tar", check=False)
    assert (result.status, result.stderr.count("\n")) == (2, 1)


def test_type_registry_pushes_and_push_needs_a_name(
    builder: Builder, tmp_path: Path, registry: str, repository: str
) -> None:
    context = make_context(tmp_path, RECIPE)
    ref = f"{registry}/{repository}:pushed"
    meta = tmp_path / "meta.json"
    builder("build", "-o", f"type=registry,name={ref}", "--metadata-file", meta, context)
    pushed = json.loads(
        subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
                       capture_output=True, check=True).stdout
    )  # fmt: skip
    digest = json.loads(meta.read_text())["containerimage.digest"]
    assert (
        pushed["config"]["digest"] == json.loads(meta.read_text())["containerimage.config.digest"]
    )
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert inspected == digest
    result = builder("build", "--push", context, check=False)
    assert result.status == 2 and "needs a name to push" in result.stderr


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_load_what_skopeo_writes_then_run(builder: Builder, tmp_path: Path, transport: str) -> None:
    archive = tmp_path / "bb.tar"
    _skopeo("copy", "-q", f"oci:{builder.root}/layout:busybox:latest",
            f"{transport}:{archive}:busybox:latest")  # fmt: skip
    fresh = Builder(tmp_path / "fresh")
    assert fresh("load", "-i", archive).stdout == "Loaded image: busybox:latest\n"
    assert _inspect(fresh, "busybox")["Id"] == _inspect(builder, "busybox")["Id"]
    assert fresh("run", "--rm", "busybox", "echo", "hi from a loaded image").stdout == (
        "hi from a loaded image\n"
    )


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_save_and_load_round_trip(builder: Builder, tmp_path: Path, fmt: str) -> None:
    context = make_context(tmp_path, RECIPE)
    builder("build", "-t", "exp:1", context)
    archive = tmp_path / "exp.tar"
    builder("save", "exp:1", "--format", fmt, "-o", archive)
    fresh = Builder(tmp_path / "fresh")
    fresh("load", "-i", archive)
    assert _inspect(fresh, "exp:1")["Id"] == _inspect(builder, "exp:1")["Id"]
    assert fresh("run", "--rm", "exp:1", "cat", "/data/new/g").stdout == "b\n"


def test_a_hostile_archive_is_one_error_and_adds_nothing(builder: Builder, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    builder("save", "busybox", "-o", archive)
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo("../../evil")
        tar.addfile(info)
    fresh = Builder(tmp_path / "fresh")
    result = fresh("load", "-i", archive, check=False)
    assert result.status == 7
    assert result.stderr == f"error: {archive}: archive entry '../../evil': '..' in path\n"
    assert fresh("images", "-q").stdout == ""
    assert os.listdir(tmp_path / "fresh" / "layout" / "blobs" / "sha256") == []


def _dir_transport(builder: Builder, name: str, dest: Path) -> Path:
    """The image as skopeo's `dir:` format (manifest.json, blobs by hex), from the store's
    blobs as they are: skopeo's oci: transport skips Docker-typed manifests in a layout."""
    layout = builder.root / "layout"
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [
        m for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name
    ]  # fmt: skip
    dest.mkdir()
    blobs = layout / "blobs" / "sha256"
    manifest = (blobs / entry["digest"].split(":")[1]).read_bytes()
    (dest / "manifest.json").write_bytes(manifest)
    doc = json.loads(manifest)
    for d in [doc["config"], *doc["layers"]]:
        shutil.copy(blobs / d["digest"].split(":")[1], dest / d["digest"].split(":")[1])
    (dest / "version").write_text("Directory Transport Version: 1.1\n")
    return dest


def test_docker_media_types_are_what_a_registry_gets(
    builder: Builder, tmp_path: Path, registry: str
) -> None:
    context = make_context(tmp_path, RECIPE)
    builder("build", "-t", "dock:1", "--oci-mediatypes=false", context)
    ours = _inspect(builder, "dock:1")
    # the same build as an -o attribute gives the same image (its steps now cached)
    builder("build", "-t", "dock:2", "-o", "type=image,oci-mediatypes=false", context)
    assert _inspect(builder, "dock:2")["Digest"] == ours["Digest"]
    image = _dir_transport(builder, "dock:1", tmp_path / "dir")
    _skopeo("copy", "-q", "--dest-tls-verify=false", f"dir:{image}",
            f"docker://{registry}/dock:1")  # fmt: skip
    raw = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false",
                             f"docker://{registry}/dock:1"))  # fmt: skip
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert raw["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert {x["mediaType"] for x in raw["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }
    pushed = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{registry}/dock:1"))
    assert pushed["Digest"] == ours["Digest"]  # the registry kept our manifest's bytes
    assert builder("run", "--rm", "dock:1", "cat", "/keep/k").stdout == "k\n"


def test_docker_media_types_refuse_zstd_and_convert_a_zstd_base(
    builder: Builder, tmp_path: Path, busybox_rootfs: Path
) -> None:
    context = make_context(tmp_path, RECIPE)
    result = builder("build", "--oci-mediatypes=false", "--compression", "zstd", context,
                     check=False)  # fmt: skip
    assert result.status == 2 and "no name for zstd" in result.stderr
    # A zstd base image: its layer is converted to gzip, which Docker's types can name.
    builder("import", "--compression", "zstd", busybox_rootfs, "zbase")
    (context / "Dockerfile").write_text(RECIPE.replace("FROM busybox", "FROM zbase"))
    builder("build", "-t", "z", "--oci-mediatypes=false", context)
    manifest = json.loads(builder("inspect", "z").stdout)[0]["Manifest"]
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }


needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")


@needs_podman
@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_podman_loads_the_archive(builder: Builder, tmp_path: Path, fmt: str) -> None:
    context = make_context(tmp_path, RECIPE)
    archive = tmp_path / "exp.tar"
    builder("build", "-t", "exp:1", "-o", f"type={fmt},dest={archive}", context)
    run = Path(tempfile.mkdtemp(prefix="podman-", dir="/tmp"))  # podman: runroot < 50 chars
    podman = ["podman", "--root", str(tmp_path / "podman"), "--runroot", str(run)]
    podman += ["--storage-driver", "vfs"]
    try:
        load = subprocess.run(
            [*podman, "load", "-i", str(archive)], capture_output=True, text=True, timeout=120
        )
        assert load.returncode == 0, load.stderr
        listed = subprocess.run(
            [*podman, "images", "--format", "json"], capture_output=True, text=True, check=True
        ).stdout
    finally:
        shutil.rmtree(run, ignore_errors=True)
    ids = [image["Id"] for image in json.loads(listed)]
    assert ids == [str(_inspect(builder, "exp:1")["Id"]).removeprefix("sha256:")]
    # The name as docker's: not podman's `localhost/exp:1` for a name without a registry.
    assert [image["Names"] for image in json.loads(listed)] == [["docker.io/library/exp:1"]]
