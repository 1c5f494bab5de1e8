"""Small test images, made without our own client, for the registry tests to push and pull.

`write_oci_layout` writes an OCI image layout by hand (one gzip layer holding the given files,
an image config, a manifest, optionally an index over several platforms); skopeo reads it as
`oci:DIR:TAG`. `save_builder_image` takes a runnable image (busybox and anything built on it)
out of a store with the CLI's `save`, for tests that must run what they pull.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.e2e.support import Builder

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

_GOARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def host_platform() -> tuple[str, str]:
    """(os, architecture) as OCI spells them, for this machine."""
    machine = platform.machine()
    return "linux", _GOARCH.get(machine, machine)


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    data: bytes


@dataclass(frozen=True)
class OciImage:
    """A layout on disk. `digest` is what `ref` names: the manifest, or the index when there
    are several platforms (then `manifests` maps each (os, arch) to its manifest digest)."""

    layout: Path
    tag: str
    digest: str
    media_type: str
    config_digest: str  # the first (or only) platform's
    layers: tuple[Blob, ...]
    manifests: dict[tuple[str, str], str]

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


def _blob(layout: Path, data: bytes) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(digest, len(data), data)


def _json_blob(layout: Path, value: Any) -> Blob:
    return _blob(layout, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _layer_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def write_oci_layout(
    layout: Path,
    files: dict[str, bytes] | None = None,
    *,
    tag: str = "latest",
    platforms: list[tuple[str, str]] | None = None,
) -> OciImage:
    """An OCI layout at `layout` with one image tagged `tag`.

    The one layer holds `files` (name -> bytes; make them unique per test when a test needs
    blobs the registry has not seen). With `platforms`, one manifest per (os, arch), all over
    that layer, under an image index; without, one manifest for the host's platform.
    """
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tar = _layer_tar(files if files is not None else {"hello.txt": b"hello from a test image\n"})
    layer = _blob(layout, gzip.compress(tar, mtime=0))
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    manifests: dict[tuple[str, str], str] = {}
    descriptors = []
    configs = []
    for os_name, arch in platforms or [host_platform()]:
        config = _json_blob(
            layout,
            {
                "architecture": arch,
                "os": os_name,
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created_by": "tests/registry/images.py"}],
            },
        )
        configs.append(config)
        manifest = _json_blob(
            layout,
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
                "layers": [
                    {"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
                ],
            },
        )
        manifests[(os_name, arch)] = manifest.digest
        descriptors.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    if platforms:
        index = _json_blob(
            layout, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        )
        top = {"mediaType": OCI_INDEX, "digest": index.digest, "size": index.size}
        digest, media_type = index.digest, OCI_INDEX
    else:
        top = {k: v for k, v in descriptors[0].items() if k != "platform"}
        digest, media_type = descriptors[0]["digest"], OCI_MANIFEST
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]})
    )
    return OciImage(layout, tag, digest, media_type, configs[0].digest, (layer,), manifests)


def save_builder_image(builder: Builder, name: str, archive: Path) -> str:
    """`builder save NAME -o ARCHIVE` (an oci-archive); the skopeo reference to it."""
    builder("save", name, "-o", archive)
    return f"oci-archive:{archive}"
