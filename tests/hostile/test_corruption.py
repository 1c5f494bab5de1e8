"""Corruption is caught, never passed on: a byte flipped in a real blob of a real store stops
every export (save in both formats, build -o of each type, export), a push to a real
registry, and anything reading a corrupt config, with one `error:` line naming the digest
and `builder fsck`, exit 6, and nothing half-written. A build that writes a blob again
(a cached rebuild re-tagging its image) replaces the corrupt copy with sound bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import StoreError
from tests.e2e.support import Builder, Result, make_context

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

RECIPE = "FROM busybox\nRUN echo hello > /hello\n"


def _image(builder: Builder, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    context = make_context(tmp_path, RECIPE)
    builder("build", "-t", "img", context)
    (info,) = json.loads(builder("inspect", "img").stdout)
    return context, info


def blob_path(builder: Builder, digest: str) -> Path:
    return builder.root / "layout" / "blobs" / "sha256" / digest.removeprefix("sha256:")


def flip(path: Path, at: float = 0.5) -> None:
    """Flip one bit in the file, at a fraction of its length."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 1
    path.write_bytes(bytes(data))


def sound(path: Path) -> bool:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == f"sha256:{path.name}"


def refused(out: Result, digest: str, status: int = StoreError.exit_code) -> None:
    assert out.status == status, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert f"blob {digest} is corrupt" in line and "builder fsck" in line, line


def test_a_corrupt_layer_blob_never_leaves_the_store(
    builder: Builder, tmp_path: Path, registry: str
) -> None:
    context, info = _image(builder, tmp_path)
    base = info["Manifest"]["layers"][0]["digest"]  # the big one: the busybox layer
    flip(blob_path(builder, base))
    out = tmp_path / "out"
    out.mkdir()
    for fmt in ("oci", "docker"):
        refused(builder("save", "--format", fmt, "-o", out / "s.tar", "img", check=False), base)
    refused(builder("export", "-o", out / "e.tar", "img", check=False), base)
    for kind in ("oci", "docker", "tar", "local"):
        dest = f"type={kind},dest={out / kind}"
        refused(builder("build", "-o", dest, context, check=False), base)
    assert list(out.iterdir()) == []  # nothing half-written
    ref = f"{registry}/hostile/corrupt:1"
    refused(builder("push", "img", ref, check=False), base)
    # The registry did not get the image: a pull of it fails.
    assert builder("pull", ref, check=False).status != 0


def test_a_corrupt_config_is_refused_then_healed_by_a_rebuild(
    builder: Builder, tmp_path: Path
) -> None:
    context, info = _image(builder, tmp_path)
    config = blob_path(builder, info["Id"])
    flip(config)
    # run's failures to start are docker run's 125
    refused(builder("run", "--rm", "img", "cat", "/hello", check=False), info["Id"], 125)
    refused(builder("save", "-o", tmp_path / "s.tar", "img", check=False), info["Id"])
    assert not (tmp_path / "s.tar").exists()
    # The cached rebuild writes the config's bytes again: the sound copy replaces the
    # corrupt one, instead of re-tagging an image that no command can then read.
    rebuilt = builder("build", "-t", "img", context)
    assert "CACHED" in rebuilt.stderr and info["Id"] in rebuilt.stdout + rebuilt.stderr
    assert sound(config)
    assert builder("run", "--rm", "img", "cat", "/hello").stdout == "hello\n"
