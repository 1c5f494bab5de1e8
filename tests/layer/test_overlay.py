"""Real overlayfs: the upper dir of a mount is a layer, and an unpacked layer is a lowerdir."""

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.image.mediatypes import Compression
from builder.layer.apply import unpack_layer
from builder.layer.write import write_layer

pytestmark = pytest.mark.needs_root


@contextmanager
def overlay(tmp: Path, lowers: list[Path], name: str) -> Iterator[tuple[Path, Path]]:
    upper, work, merged = tmp / f"{name}-upper", tmp / f"{name}-work", tmp / f"{name}-merged"
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts + ",redirect_dir=off",
                    str(merged)], check=True)  # fmt: skip
    try:
        yield merged, upper
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_upper_dir_to_layer_and_back(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("root")
    (base / "cache" / "sub").mkdir(parents=True)
    (base / "cache" / "old").write_text("old")
    (base / "cache" / "sub" / "deep").write_text("deep")
    (base / "tmpfile").write_text("t")

    with overlay(tmp_path, [base], "build") as (merged, upper):
        (merged / "tmpfile").unlink()  # -> whiteout
        subprocess.run(["rm", "-rf", str(merged / "cache")], check=True)
        (merged / "cache").mkdir()  # -> opaque dir
        (merged / "cache" / "new").write_text("new")
        (merged / "etc" / "hosts").write_text("h")
    blob = io.BytesIO()
    digests = write_layer(upper, blob, Compression.ZSTD)

    import zstandard

    plain = (
        zstandard.ZstdDecompressor().stream_reader(blob.getvalue(), read_across_frames=True).read()
    )
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        names = tar.getnames()
    assert ".wh.tmpfile" in names and "cache/.wh..wh..opq" in names
    assert "cache/new" in names and "etc/hosts" in names and "etc/passwd" not in names
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        assert not any("overlay" in k for m in tar for k in m.pax_headers)

    layer = tmp_path / "layer"
    assert unpack_layer(io.BytesIO(blob.getvalue()), layer) == digests.diff_id
    with overlay(tmp_path, [layer, base], "run") as (merged, _):
        assert sorted(os.listdir(merged)) == ["cache", "etc"]
        assert os.listdir(merged / "cache") == ["new"]
        assert sorted(os.listdir(merged / "etc")) == ["hosts", "passwd"]
