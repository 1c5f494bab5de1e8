"""File names are bytes: one that is not UTF-8 (b"caf\\xe9", Latin-1) and one holding a
newline go from the context through COPY and a RUN bind mount into a layer with their exact
bytes, and the container sees them."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from builder.engine.context import BuildContext, CopyItem, copy_digest
from builder.layer.compression import Compression
from builder.layer.write import write_layer
from tests.e2e.support import Builder

LATIN1 = b"caf\xe9"  # not UTF-8
NEWLINE = b"new\nline"
NAMES = (LATIN1, NEWLINE, "ünï".encode())


def _hostile_context(top: Path, recipe: str | None = None) -> Path:
    top.mkdir()
    root = os.fsencode(top)
    for name in NAMES:
        with open(root + b"/" + name, "wb") as f:
            f.write(b"content of " + name)
    os.mkdir(root + b"/dir-" + LATIN1)
    os.symlink(LATIN1, root + b"/dir-" + LATIN1 + b"/link-" + LATIN1)
    if recipe is not None:
        (top / "Dockerfile").write_text(recipe)
    return top


def _tar_names(blob: bytes) -> dict[bytes, tarfile.TarInfo]:
    # surrogateescape: tarfile gives a name's undecodable bytes back as surrogates.
    with tarfile.open(fileobj=io.BytesIO(blob), encoding="utf-8", errors="surrogateescape") as t:
        return {os.fsencode(m.name): m for m in t.getmembers()}


def test_context_walk_keys_and_layer_keep_the_bytes(tmp_path: Path) -> None:
    context = _hostile_context(tmp_path / "ctx")
    entries = BuildContext(context).entries
    assert {os.fsencode(p) for p in entries} == {
        *NAMES,
        b"dir-" + LATIN1,
        b"dir-" + LATIN1 + b"/link-" + LATIN1,
    }
    items = [CopyItem(e, "/" + e.path) for e in entries.values()]
    other = [CopyItem(e, "/" + e.path + "x") for e in entries.values()]
    assert copy_digest(items) != copy_digest(other)  # no UnicodeEncodeError, and it keys
    out = io.BytesIO()
    write_layer(context, out, Compression.NONE)
    blob = out.getvalue()
    members = _tar_names(blob)
    assert set(members) == {*NAMES, b"dir-" + LATIN1, b"dir-" + LATIN1 + b"/link-" + LATIN1}
    assert os.fsencode(members[b"dir-" + LATIN1 + b"/link-" + LATIN1].linkname) == LATIN1
    # The PAX records hold the raw bytes, flagged as such (POSIX hdrcharset).
    assert b"hdrcharset=BINARY\n" in blob and b" path=caf\xe9\n" in blob


RECIPE = """\
FROM busybox
COPY . /ctx/
RUN --mount=type=bind,target=/mnt \\
    n=$(printf 'caf\\351') && test -f "/mnt/$n" && test -L "/mnt/dir-$n/link-$n" \\
    && m=$(printf 'new\\nline') && test -f "/mnt/$m" && touch /bind-saw-them
"""


def _copy_layer(builder: Builder, name: str) -> bytes:
    """The uncompressed tar of the image's COPY layer (the one before RUN's)."""
    manifest = json.loads(builder("inspect", name).stdout)[0]["Manifest"]
    digest = manifest["layers"][-2]["digest"].split(":")[1]
    raw = (builder.root / "layout" / "blobs" / "sha256" / digest).read_bytes()
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read()


@pytest.mark.e2e
@pytest.mark.needs_root
def test_copy_and_bind_mount_of_names_that_are_not_utf8(builder: Builder, tmp_path: Path) -> None:
    context = _hostile_context(tmp_path / "ctx", RECIPE)
    builder("build", "-t", "names", context)
    members = _tar_names(_copy_layer(builder, "names"))
    for name in NAMES:
        assert b"ctx/" + name in members
    script = (
        "n=$(printf 'caf\\351') && m=$(printf 'new\\nline') && test -f \"/ctx/$m\""
        ' && test -f /bind-saw-them && od -An -tx1 "/ctx/$n"'
    )
    out = builder("run", "--rm", "names", "sh", "-c", script)
    assert bytes.fromhex(out.stdout.replace("\n", " ")) == b"content of caf\xe9"
    # A rebuild hits the cache (the context memo holds the names too).
    again = builder("build", "-t", "names", context)
    assert "CACHED" in again.stdout + again.stderr
