"""`--compression` holds for every layer of the image, the base's and the cached ones too,
through the real CLI and sandbox; the gzip result passes the oracles (Debian's umoci and
oci-image-tool reject zstd layers, so a zstd layer left behind would fail them)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.support import Builder, make_context
from tests.shared import shared_path

RECIPE = """\
FROM busybox
COPY msg /msg
RUN mkdir /data && cat /msg > /data/copy && rm /etc/group
CMD ["cat", "/data/copy"]
"""
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MAGIC = {GZIP: b"\x1f\x8b", ZSTD: b"\x28\xb5\x2f\xfd"}


def _layers(builder: Builder, name: str) -> list[dict[str, str]]:
    (info,) = json.loads(builder("inspect", name).stdout)
    layers: list[dict[str, str]] = info["Manifest"]["layers"]
    for layer in layers:  # the media type says what the bytes are
        blob = builder.root / "layout" / "blobs" / "sha256" / layer["digest"].split(":")[1]
        assert blob.read_bytes()[:4].startswith(MAGIC[layer["mediaType"]]), layer
    return layers


def _diff_ids(builder: Builder, name: str) -> list[str]:
    (info,) = json.loads(builder("inspect", name).stdout)
    return list(info["Config"]["rootfs"]["diff_ids"])


def test_gzip_after_zstd_is_all_gzip_and_passes_the_oracles(
    builder: Builder, tmp_path: Path
) -> None:
    context = make_context(tmp_path, RECIPE, {"msg": "compressed both ways\n"})
    zstd_id = builder("build", "-q", "--compression", "zstd", "-t", "c", context).stdout
    zstd_layers = _layers(builder, "c")
    assert [layer["mediaType"] for layer in zstd_layers] == [ZSTD] * 3  # the base's too
    gzip = builder("build", "--progress", "plain", "--compression", "gzip", "-t", "c", context)
    assert gzip.stderr.count("CACHED") >= 3, gzip.stderr
    assert builder("build", "-q", "--compression", "gzip", context).stdout == zstd_id
    gzip_layers = _layers(builder, "c")
    assert [layer["mediaType"] for layer in gzip_layers] == [GZIP] * 3
    assert not {layer["digest"] for layer in gzip_layers} & {d["digest"] for d in zstd_layers}
    assert builder("run", "--rm", "c").stdout == "compressed both ways\n"

    layout = builder.root / "layout"  # busybox:latest and c:latest, both gzip only now
    proc = subprocess.run(
        [str(shared_path("tools/oci-oracles.sh")), f"{layout}:c:latest"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "oci-image-tool validate" in proc.stdout and "umoci unpack" in proc.stdout
    assert "compressed both ways" in proc.stdout  # runc and crun ran it


def test_level_and_force_change_the_blobs_not_the_image(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, RECIPE, {"msg": "levels\n"})
    image_id = builder("build", "-q", "--compression", "gzip", "-t", "six", context).stdout
    six = _layers(builder, "six")
    flags = ("--compression", "gzip", "--compression-level", "1", "--force-compression")
    assert builder("build", "-q", *flags, "-t", "one", context).stdout == image_id
    one = _layers(builder, "one")
    assert [layer["mediaType"] for layer in one] == [GZIP] * 3
    assert all(a["digest"] != b["digest"] for a, b in zip(six, one, strict=True))
    assert _diff_ids(builder, "one") == _diff_ids(builder, "six")
    assert builder("run", "--rm", "one").stdout == "levels\n"


def test_import_takes_the_flags(builder: Builder, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hi").write_text("hi\n" * 1000)
    builder("import", "--compression", "gzip", "--compression-level", "9", rootfs, "i9")
    builder("import", "--compression", "gzip", rootfs, "i6")
    (nine,), (six,) = _layers(builder, "i9"), _layers(builder, "i6")
    assert nine["mediaType"] == six["mediaType"] == GZIP and nine["digest"] != six["digest"]


def test_a_bad_level_is_one_usage_error(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path, RECIPE, {"msg": "x\n"})
    result = builder(
        "build", "--compression", "zstd", "--compression-level", "30", context, check=False
    )
    assert result.status == 2
    assert result.stderr.strip().splitlines() == [
        "error: compression-level=30: zstd levels are 1-22"
    ]
