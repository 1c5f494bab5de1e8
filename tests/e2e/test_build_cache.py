"""A build cache shared between stores, through the real CLI and sandbox: the CI scenario
(build with --cache-to, delete the store, build with --cache-from), and the cache artifact
stored by a real registry (Debian's distribution 2.8) as it is."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

from tests.e2e.support import Builder, make_context

RECIPE = """\
FROM busybox AS build
RUN mkdir /out && echo built > /out/tool && dd if=/dev/zero of=/out/big bs=1k count=64
FROM busybox
WORKDIR /app
COPY msg /app/msg
COPY --from=build /out/tool /app/tool
RUN cat /app/msg /app/tool > /app/both
CMD ["cat", "/app/both"]
"""


def _fresh_store(builder: Builder, busybox_store: Path) -> None:
    """The CI runner's empty store: only the base, as FROM's pull would bring it."""
    shutil.rmtree(builder.root)
    shutil.copytree(busybox_store, builder.root, symlinks=True)


def _blob(root: Path, digest: str) -> Path:
    return root / "layout" / "blobs" / "sha256" / digest.removeprefix("sha256:")


def test_the_ci_scenario_with_a_local_cache(
    builder: Builder, busybox_store: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, RECIPE, {"msg": "hello from the cache\n"})
    cache = tmp_path / "cache"
    first_id = tmp_path / "first.id"
    builder(
        "build", "-t", "app", "--iidfile", first_id,
        "--cache-to", f"type=local,dest={cache},mode=max", context,
    )  # fmt: skip
    index = json.loads((cache / "index.json").read_bytes())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads(_blob_in(cache, manifest_digest).read_bytes())
    assert manifest["config"]["mediaType"] == "application/vnd.builder.cache.config.v1+json"
    tool_run = _run_layer_of_build_stage(builder)

    _fresh_store(builder, busybox_store)
    second_id = tmp_path / "second.id"
    again = builder(
        "build", "--progress", "plain", "-t", "app", "--iidfile", second_id,
        "--cache-from", f"type=local,src={cache}", context,
    )  # fmt: skip
    ends = re.findall(r"^\[\d+/8\] (CACHED|DONE)", again.stderr, re.MULTILINE)
    assert ends == ["CACHED"] * 8, again.stderr  # 2 FROMs and 6 steps
    assert "(6/6 steps cached)" in again.stderr
    assert second_id.read_text() == first_id.read_text()
    # The build stage's RUN layer was never downloaded; the image runs.
    assert not _blob(builder.root, tool_run).exists()
    assert builder("run", "--rm", "app").stdout == "hello from the cache\nbuilt\n"


def test_the_ci_scenario_with_a_registry_cache(
    builder: Builder, busybox_store: Path, tmp_path: Path, registry: str, repository: str
) -> None:
    """Build and push with --cache-to a registry, delete the store, build with --cache-from."""
    context = make_context(tmp_path, RECIPE, {"msg": "hello from the registry\n"})
    ref = f"{registry}/{repository}:cache"
    first_id = tmp_path / "first.id"
    builder(
        "build", "-t", "app", "--iidfile", first_id,
        "--cache-to", f"type=registry,ref={ref},mode=max", context,
    )  # fmt: skip
    tool_run = _run_layer_of_build_stage(builder)

    _fresh_store(builder, busybox_store)
    second_id = tmp_path / "second.id"
    again = builder(
        "build", "--progress", "plain", "-t", "app", "--iidfile", second_id,
        "--cache-from", ref, context,  # a bare REF means type=registry, as buildx has it
    )  # fmt: skip
    ends = re.findall(r"^\[\d+/8\] (CACHED|DONE)", again.stderr, re.MULTILINE)
    assert ends == ["CACHED"] * 8, again.stderr
    assert second_id.read_text() == first_id.read_text()
    assert not _blob(builder.root, tool_run).exists()  # not downloaded: no image needs it
    assert builder("run", "--rm", "app").stdout == "hello from the registry\nbuilt\n"


def _blob_in(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _run_layer_of_build_stage(builder: Builder) -> str:
    """The layer blob of the build stage's RUN: a step record whose layer no image has."""
    images = set()
    for name in ("app", "busybox"):
        (info,) = json.loads(builder("inspect", name).stdout)
        images |= {layer["digest"] for layer in info["Manifest"]["layers"]}
    only_cached = []
    for record in (builder.root / "cache").glob("*.json"):
        value = json.loads(record.read_bytes())
        layer = value.get("layer") if isinstance(value, dict) else None
        if isinstance(layer, dict) and layer["digest"] not in images:
            only_cached.append(layer["digest"])
    (digest,) = only_cached
    return str(digest)


def _push_layout(layout: Path, registry: str, repo: str, tag: str) -> str:
    """The cache directory's blobs and manifest, sent as any client sends them (monolithic
    uploads): what the registry does with our artifact, with no client of ours in the way."""
    index = json.loads((layout / "index.json").read_bytes())
    entry = index["manifests"][0]
    data = _blob_in(layout, entry["digest"]).read_bytes()
    manifest = json.loads(data)
    for desc in (manifest["config"], *manifest["layers"]):
        start = urllib.request.Request(f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(start) as response:
            location = response.headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry}{location}"
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{sep}digest={desc['digest']}",
            data=_blob_in(layout, desc["digest"]).read_bytes(),
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(put) as response:
            assert response.status == 201
    put = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        data=data,
        method="PUT",
        headers={"Content-Type": manifest["mediaType"]},
    )
    with urllib.request.urlopen(put) as response:
        assert response.status == 201
        return str(response.headers["Docker-Content-Digest"])


def test_a_registry_stores_the_cache_artifact_as_it_is(
    builder: Builder, tmp_path: Path, registry: str
) -> None:
    context = make_context(tmp_path, RECIPE, {"msg": "m\n"})
    cache = tmp_path / "cache"
    builder("build", "--cache-to", f"type=local,dest={cache},mode=max", context)
    entry = json.loads((cache / "index.json").read_bytes())["manifests"][0]
    digest = _push_layout(cache, registry, "ci/cache", "main")
    assert digest == entry["digest"]
    get = urllib.request.Request(
        f"http://{registry}/v2/ci/cache/manifests/main",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(get) as response:
        served = response.read()
    assert served == _blob_in(cache, entry["digest"]).read_bytes()
    assert json.loads(served)["artifactType"] == "application/vnd.builder.cache.v1"


def test_bad_cache_flags_are_usage_errors(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\n")
    for flag, value, words in (
        ("--cache-to", "type=gha", "unknown cache type 'gha'"),
        ("--cache-to", f"type=local,dest={tmp_path}/c,colour=red", "unknown key 'colour'"),
        ("--cache-to", f"type=local,dest={tmp_path}/c,mode=all", "mode=all"),
        ("--cache-from", f"type=local,dest={tmp_path}/c", "unknown key 'dest'"),
        ("--cache-from", "type=local", "src= is required"),
    ):
        result = builder("build", flag, value, context, check=False)
        assert result.status == 2, (value, result.stderr)
        assert result.stderr.startswith("error: ") and words in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
