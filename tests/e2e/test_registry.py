"""Pull, push, tag and the build flags through the real CLI and a real docker-registry, with
skopeo as the reference client on the other side."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder import errors
from builder.image.mediatypes import MediaType
from builder.registry.client import Registry
from builder.registry.settings import Settings
from tests.e2e.support import REPO, Builder, make_context
from tests.registry.scripted import Answer, FakeImage, Script, digest, serve

QUICK = {"BUILDER_REGISTRY_TIMEOUT": "2"}  # the refused and timed-out cases end fast


def skopeo(*args: str) -> str:
    proc = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def remote(ref: str) -> dict[str, Any]:
    """skopeo's view of an image in the plain-HTTP registry."""
    info: dict[str, Any] = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    return info


def remote_manifest(ref: str) -> dict[str, Any]:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    value: dict[str, Any] = json.loads(raw)
    return value


def local(builder: Builder, name: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(builder("inspect", name).stdout)[0]
    return info


@pytest.fixture(scope="module")
def schema2(registry: str, busybox_store: Path) -> str:
    """busybox, copied by skopeo into the registry as Docker schema 2 (skopeo converts)."""
    ref = f"{registry}/e2e/schema2:1"
    skopeo(
        "copy",
        "-q",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        f"oci:{busybox_store}/layout:busybox:latest",
        f"docker://{ref}",
    )
    return ref


@pytest.fixture
def fresh(tmp_path: Path) -> Builder:
    """A store with nothing in it."""
    return Builder(tmp_path / "fresh")


# -- round trips -------------------------------------------------------------------------


def test_what_we_push_skopeo_reads_with_the_same_digest(builder: Builder, registry: str) -> None:
    ref = f"{registry}/e2e/pushed:1"
    pushed = builder("push", "-q", "busybox:latest", ref).stdout.strip()
    assert pushed == local(builder, "busybox:latest")["Digest"]
    assert remote(ref)["Digest"] == pushed


def test_what_skopeo_pushes_in_schema2_we_pull_unchanged_and_run(
    fresh: Builder, schema2: str
) -> None:
    pulled = fresh("pull", "-q", schema2).stdout.strip()
    assert pulled == remote(schema2)["Digest"]
    info = local(fresh, schema2)
    assert info["Digest"] == pulled
    assert info["Manifest"]["mediaType"] == MediaType.DOCKER_MANIFEST
    assert info["Manifest"]["config"]["mediaType"] == MediaType.DOCKER_CONFIG
    # the stored manifest is the registry's, byte for byte
    blob = fresh.root / "layout" / "blobs" / "sha256" / pulled.partition(":")[2]
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == pulled
    # The pull is a transfer, as skopeo's copy is: the layers are unpacked on first use.
    diff_ids = info["Config"]["rootfs"]["diff_ids"]
    layers = fresh.root / "layers"
    assert diff_ids and not any((layers / d[len("sha256:") :]).exists() for d in diff_ids)
    run = fresh("run", "--rm", schema2, "echo", "hello from a pulled image")
    assert run.stdout == "hello from a pulled image\n"
    assert all((layers / d[len("sha256:") :]).is_dir() for d in diff_ids)


def test_a_second_pull_moves_nothing(fresh: Builder, schema2: str) -> None:
    fresh("pull", "-q", schema2)
    again = fresh("pull", "--progress", "plain", schema2)
    assert "downloaded" not in again.stderr
    assert again.stderr.count(" present ") == 2  # the config and the one layer


def test_a_blob_another_repository_holds_is_mounted(builder: Builder, registry: str) -> None:
    first = f"{registry}/e2e/mount-a:1"
    builder("tag", "busybox:latest", first)
    builder("push", "-q", first)
    again = builder("push", "--progress", "plain", first, f"{registry}/e2e/mount-b:1")
    assert again.stderr.count(" mounted ") == 2, again.stderr
    assert remote(f"{registry}/e2e/mount-b:1")["Digest"] == remote(first)["Digest"]


def test_rmi_removes_an_unnamed_image_skopeo_wrote_by_its_id_or_digest(
    builder: Builder, tmp_path: Path
) -> None:
    """An archive skopeo writes names no image: loaded, it is known by its ID and manifest
    digest only, and `rmi` takes either, as docker rmi does."""
    info = local(builder, "busybox:latest")
    named, nameless = tmp_path / "named.tar", tmp_path / "nameless.tar"
    builder("save", "busybox:latest", "-o", named)
    skopeo("copy", "-q", f"oci-archive:{named}", f"oci-archive:{nameless}")
    for spelled in (str(info["Id"]).removeprefix("sha256:")[:12], str(info["Digest"])):
        builder("rmi", "busybox:latest")
        builder("load", "-i", nameless)
        assert local(builder, str(info["Digest"]))["Id"] == info["Id"]  # there, unnamed
        removed = builder("rmi", spelled)
        assert removed.stdout == f"deleted {info['Digest']}\n"
        assert json.loads((builder.root / "layout/index.json").read_bytes())["manifests"] == []
        builder("load", "-i", named)


def test_rmi_by_id_of_an_image_with_two_names_needs_force(builder: Builder) -> None:
    image_id = str(local(builder, "busybox:latest")["Id"])
    builder("tag", "busybox:latest", "other:1")
    refused = builder("rmi", image_id[:19], check=False)
    assert refused.status == errors.UsageError.exit_code
    assert refused.stderr.startswith("error: conflict: unable to delete")
    assert refused.stderr.count("\n") == 1
    assert len(json.loads((builder.root / "layout/index.json").read_bytes())["manifests"]) == 2
    forced = builder("rmi", "-f", image_id).stdout.splitlines()
    assert forced[:2] == ["untagged busybox:latest", "untagged other:1"]
    assert json.loads((builder.root / "layout/index.json").read_bytes())["manifests"] == []


def test_tag_names_an_image_again(builder: Builder) -> None:
    assert builder("tag", "busybox", "team/box:2").stdout == "tagged team/box:2\n"
    assert local(builder, "team/box:2")["Id"] == local(builder, "busybox")["Id"]
    assert builder("run", "--rm", "team/box:2", "echo", "ok").stdout == "ok\n"
    bad = builder("tag", "busybox", f"x@sha256:{'a' * 64}", check=False)
    assert bad.status == errors.UsageError.exit_code


# -- builds ------------------------------------------------------------------------------


def test_from_a_missing_image_pulls_it(fresh: Builder, schema2: str, tmp_path: Path) -> None:
    context = make_context(tmp_path, f"FROM {schema2}\nRUN echo built > /built\n")
    fresh("build", "-t", "out", context)
    assert fresh("run", "--rm", "out", "cat", "/built").stdout == "built\n"
    manifest = local(fresh, "out")["Manifest"]
    # An OCI manifest names the schema 2 base's layer by its OCI type: no mixed vocabulary.
    assert manifest["mediaType"] == MediaType.OCI_MANIFEST
    assert manifest["layers"][0]["mediaType"] == MediaType.OCI_LAYER_GZIP
    assert [name for name, _ in _refs(fresh.root)] == [schema2, "out:latest"]


def test_build_push_pushes_every_tag(builder: Builder, registry: str, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN echo pushed > /p\n")
    one, two = f"{registry}/e2e/app:1", f"{registry}/e2e/app:2"
    builder("build", "--push", "-t", one, "-t", two, context)
    ours = local(builder, one)["Digest"]
    assert remote(one)["Digest"] == remote(two)["Digest"] == ours
    no_tag = builder("build", "--push", context, check=False)
    assert no_tag.status == errors.UsageError.exit_code


def test_build_pull_takes_the_newer_base(
    builder: Builder, fresh: Builder, registry: str, tmp_path: Path
) -> None:
    base = f"{registry}/e2e/base:1"
    builder("push", "-q", "busybox:latest", base)
    fresh("pull", "-q", base)
    newer = make_context(tmp_path / "newer", "FROM busybox\nRUN touch /marker\n")
    builder("build", "-t", "newer", newer)
    builder("push", "-q", "newer", base)
    app = make_context(tmp_path / "app", f"FROM {base}\nRUN test -f /marker\n")
    stale = fresh("build", app, check=False)
    assert stale.status == errors.StepFailed.exit_code  # the store's old base, no marker
    fresh("build", "--pull", app)
    assert local(fresh, base)["Digest"] == local(builder, "newer")["Digest"]


def test_a_cached_build_does_not_import_the_registry_client(
    builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN echo hi > /hi\n")
    builder("build", "-t", "cached", context)
    probe = f"""
import sys
from builder.cli.main import main
try:
    main(["--root", {str(builder.root)!r}, "build", "-q", {str(context)!r}])
except SystemExit as done:
    assert done.code == 0, done.code
print(sorted(m for m in sys.modules if m.startswith(("urllib3", "builder.registry"))))
"""
    path = [str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    # The event types the renderers know, and nothing that speaks HTTP.
    assert done.stdout.splitlines()[-1] == "['builder.registry', 'builder.registry.events']"


def test_chunked_uploads_reach_a_real_registry(
    builder: Builder, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer bigger than a chunk goes up in PATCH chunks; the registry checks the digest
    of what they add up to, and skopeo reads the image back."""
    from builder.registry import client
    from builder.registry.push import push
    from builder.store import Store

    methods: list[str] = []
    send = client.Registry.request

    def spy(self: Registry, method: str, target: str, **kw: Any) -> Any:
        methods.append(method)
        return send(self, method, target, **kw)

    monkeypatch.setattr(client.Registry, "request", spy)
    ref = f"{registry}/e2e/chunked:1"
    store = Store.open(builder.root)
    layer = store.image("busybox").manifest.layers[0]
    chunk = 256 << 10
    pushed = push(store, "busybox", ref, settings=Settings(), chunk_size=chunk)
    assert methods.count("PATCH") == -(-layer.size // chunk)
    assert remote(ref)["Digest"] == pushed


# -- bad input ---------------------------------------------------------------------------


def _refs(root: Path) -> list[tuple[str, str]]:
    index = json.loads((root / "layout" / "index.json").read_bytes())
    return [
        (m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])
        for m in index["manifests"]
    ]


def _snapshot(root: Path) -> tuple[bytes, list[str], list[str]]:
    blobs = sorted(p.name for p in (root / "layout" / "blobs" / "sha256").iterdir())
    return (root / "layout" / "index.json").read_bytes(), blobs, os.listdir(root / "tmp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def other_platform_only(registry: str, busybox_store: Path) -> str:
    """An index in the registry whose one manifest is for another machine."""
    ref = f"{registry}/e2e/foreign"
    Builder(busybox_store)("push", "-q", "busybox:latest", f"{ref}:plain")
    manifest = remote_manifest(f"{ref}:plain")
    data = json.dumps(manifest).encode()
    arch = "s390x" if os.uname().machine != "s390x" else "riscv64"
    index = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX,
        "manifests": [
            {
                "mediaType": MediaType.OCI_MANIFEST,
                "digest": digest(data),
                "size": len(data),
                "platform": {"architecture": arch, "os": "linux"},
            }
        ],
    }
    repo = Registry(registry, Settings()).repository("e2e/foreign")
    repo.put_manifest(str(digest(data)), data, MediaType.OCI_MANIFEST)
    repo.put_manifest("1", json.dumps(index).encode(), MediaType.OCI_INDEX)
    return f"{ref}:1"


@pytest.fixture
def forging() -> Iterator[str]:
    """A scripted registry whose layer bytes do not match their digest."""
    script = Script()
    image = FakeImage.make(b"the real layer bytes")
    image.serve_on(script, "forged")
    script.on(f"GET /v2/forged/blobs/{digest(image.layer)}", Answer(200, b"the fake layer bytes"))
    with serve(script) as host:
        yield f"{host}/forged"


BAD = [
    ("unknown-host", errors.RegistryError, "cannot reach registry nohost.invalid: unknown host"),
    ("refused", errors.RegistryError, "connection refused (gave up after"),
    ("404", errors.ImageNotFound, "/e2e/never-pushed:1 in the registry"),
    ("no-platform", errors.RegistryError, "has no image for linux/"),
    ("forged", errors.RegistryError, "does not match its digest"),
]


@pytest.mark.parametrize(("case", "error", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_pulls_end_in_one_error_line_and_leave_the_store_as_it_was(
    request: pytest.FixtureRequest,
    builder: Builder,
    registry: str,
    case: str,
    error: type[errors.BuilderError],
    message: str,
) -> None:
    name = {
        "unknown-host": lambda: "nohost.invalid/app:1",
        "refused": lambda: f"127.0.0.1:{_free_port()}/app:1",
        "404": lambda: f"{registry}/e2e/never-pushed:1",
        "no-platform": lambda: request.getfixturevalue("other_platform_only"),
        "forged": lambda: request.getfixturevalue("forging"),
    }[case]()
    before = _snapshot(builder.root)
    failed = builder("pull", "-q", name, check=False, env=QUICK)
    assert failed.status == error.exit_code, failed.stderr
    assert failed.stderr.count("error:") == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith("error: ") and message in failed.stderr
    assert _snapshot(builder.root) == before


def test_a_from_that_cannot_be_pulled_says_where(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM nohost.invalid/base:1\nRUN true\n")
    failed = builder("build", "--progress", "quiet", context, check=False)
    assert failed.status == errors.RegistryError.exit_code
    assert failed.stderr == (
        "error: Dockerfile:1: FROM nohost.invalid/base:1: cannot reach registry nohost.invalid:"
        " unknown host nohost.invalid\n"
    )


def test_a_from_the_registry_does_not_have_is_a_missing_image(
    builder: Builder, registry: str, tmp_path: Path
) -> None:
    context = make_context(tmp_path, f"FROM {registry}/e2e/never-pushed:2\nRUN true\n")
    before = _snapshot(builder.root)
    failed = builder("build", "--progress", "quiet", context, check=False)
    assert failed.status == errors.ImageNotFound.exit_code
    assert failed.stderr == (
        f"error: Dockerfile:1: FROM {registry}/e2e/never-pushed:2: no image"
        f" {registry}/e2e/never-pushed:2 in the registry\n"
    )
    assert _snapshot(builder.root) == before
