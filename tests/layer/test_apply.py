import io
import os
import stat
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.image.mediatypes import Compression
from builder.layer.apply import unpack_layer
from builder.layer.write import write_layer
from tests.layer.conftest import entry, make_tar


def _unpack(data: bytes, dest: Path) -> Digest:
    return unpack_layer(io.BytesIO(data), dest)


def test_round_trip_through_write_layer_in_every_compression(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "e" / "f").write_bytes(b"data")
    os.link(src / "d" / "e" / "f", src / "hl")
    os.symlink("d/e", src / "sym")
    os.mkfifo(src / "fifo")
    os.chown(src / "d" / "e" / "f", 10, 20)
    os.chmod(src / "d" / "e" / "f", 0o4711)  # after chown, which clears setuid
    os.setxattr(src / "d", "user.k", b"v")
    os.utime(src / "d", (5, 5))
    for comp in Compression:
        blob = io.BytesIO()
        digests = write_layer(src, blob, comp)
        dest = tmp_path / f"out-{comp}"
        assert _unpack(blob.getvalue(), dest) == digests.diff_id
        f = os.lstat(dest / "d" / "e" / "f")
        assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid) == (0o4711, 10, 20)
        assert os.lstat(dest / "hl").st_ino == f.st_ino
        assert os.readlink(dest / "sym") == "d/e"
        assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
        assert os.getxattr(dest / "d", "user.k") == b"v"
        assert os.lstat(dest / "d").st_mtime == 5  # dir mtime set after its children


def test_gnu_tar_archive_with_dot_slash_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "x" / "y").write_text("y")
    data = subprocess.run(
        ["tar", "-C", str(src), "-cf", "-", "."], capture_output=True, check=True
    ).stdout
    _unpack(zlib.compress(data, wbits=31), tmp_path / "out")  # gzip, sniffed
    assert (tmp_path / "out" / "x" / "y").read_text() == "y"


def test_oci_whiteouts_become_overlay_form(tmp_path: Path) -> None:
    data = make_tar(
        [
            (entry("d", tarfile.DIRTYPE), None),
            (entry("d/.wh..wh..opq"), b""),
            (entry("d/keep"), b"k"),
            (entry(".wh.gone"), b""),
            (entry("d/.wh.old"), b""),
        ]
    )
    dest = tmp_path / "out"
    _unpack(data, dest)
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"
    for p in (dest / "gone", dest / "d" / "old"):
        st = os.lstat(p)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (dest / ".wh.gone").exists() and (dest / "d" / "keep").read_bytes() == b"k"


def test_overlay_xattrs_in_a_layer_are_dropped(tmp_path: Path) -> None:
    d = entry("d", tarfile.DIRTYPE)
    d.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.x": "1"}
    _unpack(make_tar([(d, None)]), tmp_path / "out")
    assert os.listxattr(tmp_path / "out" / "d") == ["user.x"]


def test_duplicates_last_wins(tmp_path: Path) -> None:
    data = make_tar(
        [
            (entry("a"), b"first"),
            (entry("a", tarfile.DIRTYPE), None),
            (entry("a/x"), b"x"),
            (entry("a"), b"last"),
        ]
    )
    _unpack(data, tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"last"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(entry("../escape"), b"x")], "'..'"),
        ([(entry("a/../../escape"), b"x")], "'..'"),
        ([(entry("/etc/escape"), b"x")], "absolute"),
        (
            [(entry("a", tarfile.SYMTYPE, linkname="OUTSIDE"), None), (entry("a/passwd"), b"x")],
            "symlink",
        ),
        (
            [
                (entry("a", tarfile.SYMTYPE, linkname="."), None),
                (entry("b", tarfile.SYMTYPE, linkname="OUTSIDE"), None),
                (entry("a/b/pw"), b"x"),
            ],
            "symlink",
        ),
        ([(entry("h", tarfile.LNKTYPE, linkname="../OUTSIDE/secret"), None)], "'..'"),
        ([(entry("h", tarfile.LNKTYPE, linkname="/etc/passwd"), None)], "absolute"),
        ([(entry("h", tarfile.LNKTYPE, linkname="never"), None)], "not a file earlier"),
        (
            [
                (entry("s", tarfile.SYMTYPE, linkname="OUTSIDE/secret"), None),
                (entry("h", tarfile.LNKTYPE, linkname="s/x"), None),
            ],
            "not a file earlier",
        ),
    ],
)
def test_hostile_layers(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    for info, _ in members:  # point symlinks at the real outside dir
        info.linkname = info.linkname.replace("OUTSIDE", str(outside))
    dest = tmp_path / "dest"
    with pytest.raises(LayerError, match=message):
        _unpack(make_tar(members), dest)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "s"
    assert not (tmp_path / "escape").exists()


def test_corrupt_and_truncated_streams(tmp_path: Path) -> None:
    data = make_tar([(entry("f"), b"x" * 5000)])
    with pytest.raises(LayerError):
        _unpack(data[:1200], tmp_path / "a")  # truncated inside the file data
    z = zlib.compress(data, wbits=31)
    with pytest.raises(LayerError, match="corrupt"):
        _unpack(z[:20] + b"\0" * 20 + z[40:], tmp_path / "b")
    with pytest.raises(LayerError, match="expected diff_id"):
        unpack_layer(io.BytesIO(data), tmp_path / "c", expected_diff_id=Digest.of_bytes(b""))
    assert unpack_layer(
        io.BytesIO(data), tmp_path / "d", expected_diff_id=Digest.of_bytes(data)
    ) == Digest.of_bytes(data)


def _flatten(layers: list[bytes], dest: Path) -> None:
    for data in layers:
        unpack_layer(io.BytesIO(data), dest, flatten=True)


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_flatten_applies_whiteouts_instead_of_recording_them(tmp_path: Path) -> None:
    lower = make_tar(
        [
            (entry("gone"), b"x"),
            (entry("d", tarfile.DIRTYPE), None),
            (entry("d/old"), b"o"),
            (entry("d/sub", tarfile.DIRTYPE), None),
            (entry("d/sub/deep"), b"o"),
            (entry("e", tarfile.DIRTYPE), None),
            (entry("e/old"), b"o"),
            (entry("e/stays"), b"s"),
        ]
    )
    upper = make_tar(
        [
            (entry(".wh.gone"), b""),
            (entry("d", tarfile.DIRTYPE), None),
            (entry("d/new"), b"n"),  # this layer's, before the marker: kept
            (entry("d/sub", tarfile.DIRTYPE), None),  # re-declared: its old content still goes
            (entry("d/.wh..wh..opq"), b""),
            (entry("d/sub/mine"), b"m"),
            (entry("e/.wh.old"), b""),
        ]
    )
    dest = tmp_path / "root"
    _flatten([lower, upper], dest)
    assert _tree(dest) == {
        "d": None,
        "d/new": b"n",
        "d/sub": None,
        "d/sub/mine": b"m",
        "e": None,
        "e/stays": b"s",
    }
    assert os.listxattr(dest / "d") == []  # no overlay opaque marker, no whiteout nodes


def test_flatten_keeps_a_lower_dirs_time_when_a_layer_writes_into_it(tmp_path: Path) -> None:
    lower = make_tar([(entry("d", tarfile.DIRTYPE), None), (entry("d/a"), b"a")])
    upper = make_tar([(entry("d/b"), b"b"), (entry("d/.wh.a"), b"")])  # no header for d
    dest = tmp_path / "root"
    _flatten([lower, upper], dest)
    assert _tree(dest) == {"d": None, "d/b": b"b"}
    assert os.lstat(dest / "d").st_mtime == 1_000_000


def test_flatten_stays_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    lower = make_tar([(entry("link", tarfile.SYMTYPE, linkname=str(outside)), None)])
    upper = make_tar([(entry("link/.wh..wh..opq"), b""), (entry("link/x"), b"x")])
    with pytest.raises(LayerError, match="symlink"):
        _flatten([lower, upper], tmp_path / "root")
    assert list(outside.iterdir()) == []
