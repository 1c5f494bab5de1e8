"""Run a Case through the real CLI and compare the image with what BuildKit makes.

The build goes into one store shared by the session (each case tags its own name); the
files come from `builder export` (a tar: owners and modes exactly as the image holds them),
the config and history from `builder inspect`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import zstandard

from tests.behaviour.case import NOT_SET, Case, F, Src
from tests.e2e.support import Builder


def write_context(root: Path, case: Case) -> Path:
    context = root / "ctx"
    context.mkdir(parents=True)
    if "Dockerfile" not in case.context:
        (context / "Dockerfile").write_text(case.recipe)
    for name, entry in case.context.items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        src = entry if isinstance(entry, Src) else Src(content=entry)
        if src.link is not None:
            path.symlink_to(src.link)
            continue
        if src.dir:
            path.mkdir(exist_ok=True)
        elif isinstance(src.content, bytes):
            path.write_bytes(src.content)
        else:
            path.write_text(src.content)
        if src.mode is not None:
            os.chmod(path, src.mode)
    return context


def check(builder: Builder, tmp: Path, case: Case) -> None:
    context = write_context(tmp, case)
    for image, recipe in case.before:
        built = tmp / f"before-{image.replace('/', '-')}.Dockerfile"
        built.write_text(recipe)
        builder("build", "-q", "-f", built, "-t", image, context)
    name = f"behaviour/{case.id.lower()}"
    flags = [*case.flags, *(["--no-cache"] if case.no_cache else [])]
    result = builder(
        "build", "--progress", "plain", "-t", name, *flags, context, check=False, env=dict(case.env)
    )
    if case.fails is not None:
        said = error_line(result.stderr)
        expected = case.fails.exit_code
        assert result.status != 0, f"exit 0: {said}"
        assert expected is None or result.status == expected, f"exit {result.status}: {said}"
        assert case.fails.message in result.stderr, f"message: {said}"
        assert "Traceback" not in result.stderr
        return
    assert result.status == 0, f"failed: {error_line(result.stderr)}"
    if case.files or case.absent:
        check_files(builder, tmp, name, case)
    if case.last_layer:
        names = last_layer_names(builder, tmp, name)
        for entry in case.last_layer:
            assert entry in names, f"{entry} not in the last layer: {sorted(names)}"
    if case.config or case.env_has or case.env_lacks or case.history is not None:
        check_config(builder, name, case)


def error_line(stderr: str) -> str:
    """The `error:` line of a failed build (else its last line), for the assertion message."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def check_files(builder: Builder, tmp: Path, name: str, case: Case) -> None:
    archive = tmp / "rootfs.tar"
    builder("export", "-o", archive, name)
    with tarfile.open(archive) as tar:
        members = {m.name.rstrip("/").removeprefix("./"): m for m in tar.getmembers()}
        for path, want in case.files.items():
            key = path.strip("/")
            assert key in members, f"{path} missing from the image"
            member = members[key]
            spec = want if isinstance(want, F) else F(content=want)
            if spec.content is not None:
                assert member.isfile(), f"{path} is not a regular file"
                handle = tar.extractfile(member)
                assert handle is not None
                data = handle.read()
                expected = spec.content.encode() if isinstance(spec.content, str) else spec.content
                assert data == expected, f"{path}: {data!r} != {expected!r}"
            if spec.contains or spec.lacks:
                handle = tar.extractfile(member)
                assert handle is not None
                text = handle.read().decode()
                for part in spec.contains:
                    assert part in text, f"{path} lacks {part!r}: {text!r}"
                for part in spec.lacks:
                    assert part not in text, f"{path} holds {part!r}: {text!r}"
            if spec.mode is not None:
                assert member.mode & 0o7777 == spec.mode, f"{path}: mode {member.mode:o}"
            if spec.uid is not None:
                assert member.uid == spec.uid, f"{path}: uid {member.uid}"
            if spec.gid is not None:
                assert member.gid == spec.gid, f"{path}: gid {member.gid}"
            if spec.link is not None:
                assert member.issym(), f"{path} is not a symlink"
                assert member.linkname == spec.link, f"{path} -> {member.linkname}"
            if spec.kind is not None:
                kind = "dir" if member.isdir() else "symlink" if member.issym() else "file"
                assert kind == spec.kind, f"{path} is a {kind}"
        for path in case.absent:
            assert path.strip("/") not in members, f"{path} should not be in the image"


def check_config(builder: Builder, name: str, case: Case) -> None:
    image: dict[str, Any] = json.loads(builder("inspect", name).stdout)[0]["Config"]
    config: dict[str, Any] = image.get("config", {})
    for key, want in case.config.items():
        if want is NOT_SET:
            assert key not in config, f"config {key} = {config[key]!r}, should be unset"
        else:
            assert config.get(key) == want, f"config {key} = {config.get(key)!r}, not {want!r}"
    env = dict(entry.split("=", 1) for entry in config.get("Env", []))
    for key, value in case.env_has.items():
        assert env.get(key) == value, f"Env {key} = {env.get(key)!r}, not {value!r}"
    for key in case.env_lacks:
        assert key not in env, f"Env {key} should not be set"
    if case.history is not None:
        history = image.get("history", [])
        added = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in history]
        assert added[case.history_base :] == list(case.history), f"history: {added}"


def last_layer_names(builder: Builder, tmp: Path, name: str) -> set[str]:
    archive = tmp / "image.oci.tar"
    builder("save", "-o", archive, name)
    with tarfile.open(archive) as oci:

        def blob(digest: str) -> bytes:
            handle = oci.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
            assert handle is not None
            return handle.read()

        index_file = oci.extractfile("index.json")
        assert index_file is not None
        manifest = json.loads(blob(json.load(index_file)["manifests"][0]["digest"]))
        layer = manifest["layers"][-1]
        data = blob(layer["digest"])
    if layer["mediaType"].endswith("zstd"):
        data = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    elif layer["mediaType"].endswith("gzip"):
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name.rstrip("/") for member in tar.getmembers()}
