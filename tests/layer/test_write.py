import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.errors import LayerError
from builder.image.digest import Digest
from builder.image.mediatypes import Compression, MediaType
from builder.layer.write import write_layer


def _populate(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f").write_bytes(b"hello\n")
    (root / "big").write_bytes(os.urandom(3 << 20))  # spans several flushes
    os.link(root / "d" / "e" / "f", root / "hl")
    os.symlink("/etc/passwd", root / "sym")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o020666, os.makedev(1, 3))
    (root / "suid").write_bytes(b"")
    os.chmod(root / "suid", 0o4755)
    os.chown(root / "d", 1234, 5678)
    os.setxattr(root / "d", "user.note", b"v\x00\xff")
    (root / "a-b").write_bytes(b"")  # '-' sorts before '/': checks depth-first order


def _write(src: Path, compression: Compression = Compression.NONE) -> tuple[bytes, object]:
    out = io.BytesIO()
    digests = write_layer(src, out, compression)
    return out.getvalue(), digests


def test_tar_contents_read_back_with_tarfile_and_gnu_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _populate(src)
    data, digests = _write(src)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
        names = [m.name for m in tar.getmembers()]
    assert names == ["a-b", "big", "d", "d/e", "d/e/f", "fifo", "hl", "null", "suid", "sym"]
    assert members["hl"].islnk() and members["hl"].linkname == "d/e/f"
    assert members["sym"].issym() and members["sym"].linkname == "/etc/passwd"
    assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (
        1,
        3,
    )
    assert members["suid"].mode == 0o4755
    assert (members["d"].uid, members["d"].gid) == (1234, 5678)
    assert (
        members["d"].pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape")
        == b"v\x00\xff"
    )
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    # GNU tar as an independent oracle: it lists dirs with a trailing slash, as we wrote them.
    listing = subprocess.run(["tar", "-tf", "-"], input=data, capture_output=True, check=True)
    assert listing.stdout.decode().split("\n")[:4] == ["a-b", "big", "d/", "d/e/"]
    assert digests.diff_id == Digest.of_bytes(data)  # type: ignore[attr-defined]
    assert digests.digest == digests.diff_id and digests.size == len(data)  # type: ignore[attr-defined]


def test_deterministic_and_compressed_streams_decompress_to_diff_id(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _populate(src)
    plain, d0 = _write(src)
    for comp, tool, mt in (
        (Compression.GZIP, ["gzip", "-dc"], MediaType.OCI_LAYER_GZIP),
        (Compression.ZSTD, ["zstd", "-dc"], MediaType.OCI_LAYER_ZSTD),
    ):
        blob, d = _write(src, comp)
        again, d_again = _write(src, comp)
        assert blob == again and d == d_again
        out = subprocess.run(tool, input=blob, capture_output=True, check=True).stdout
        assert out == plain
        assert d.diff_id == d0.diff_id and d.media_type == mt  # type: ignore[attr-defined]
        assert d.digest == Digest.of_bytes(blob) and d.size == len(blob)  # type: ignore[attr-defined]


def test_mtime_clamp(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    out = io.BytesIO()
    write_layer(tmp_path, out, Compression.NONE, mtime_clamp=100)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert [m.mtime for m in tar] == [100]


CLAMP = 1_700_000_000
OLD = 1_000_000_000
FAR = 8**11 + 5  # too big for the ustar field: without a clamp it needs a PAX mtime record


def _every_kind(root: Path) -> None:
    """One entry of each kind the writer emits, as an overlay upper dir holds them."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "new").write_bytes(b"new\n")
    (root / "dir" / "old").write_bytes(b"old\n")
    os.link(root / "dir" / "sub" / "new", root / "hardlink")
    os.symlink("dir/old", root / "symlink")  # a target older than the link itself
    os.mkfifo(root / "fifo")
    os.mknod(root / "gone", 0o020000, os.makedev(0, 0))  # an overlay whiteout
    (root / "opaque").mkdir()
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    (root / "far").write_bytes(b"")


def _set_times(root: Path) -> None:
    """Every entry newer than CLAMP, except dir/old (older) and far (past the ustar field).
    Children first, since creating entries moved their parents' mtimes."""
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        t = {"old": OLD, "far": FAR}.get(path.name, CLAMP + 3600)
        os.utime(path, (t, t), follow_symlinks=False)


def _members(src: Path, clamp: int | None) -> tuple[bytes, dict[str, tarfile.TarInfo]]:
    out = io.BytesIO()
    write_layer(src, out, Compression.NONE, mtime_clamp=clamp)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        return out.getvalue(), {m.name: m for m in tar}


def test_clamp_caps_every_kind_of_entry_and_keeps_older_times(tmp_path: Path) -> None:
    _every_kind(tmp_path)
    _set_times(tmp_path)
    assert os.stat(tmp_path / "symlink").st_mtime == OLD  # the target; lstat: CLAMP + 3600
    _, members = _members(tmp_path, CLAMP)
    clamped = {name: m.mtime for name, m in members.items()}
    assert clamped == {
        "dir": CLAMP,
        "dir/old": OLD,  # older than the epoch: kept, as BuildKit's rewrite-timestamp does
        "dir/sub": CLAMP,
        "dir/sub/new": CLAMP,
        "far": CLAMP,
        "fifo": CLAMP,
        ".wh.gone": CLAMP,  # the whiteout takes the clamp too
        "hardlink": CLAMP,
        "opaque": CLAMP,
        "opaque/.wh..wh..opq": CLAMP,
        "symlink": CLAMP,  # the link's own (lstat) time, not its target's
    }
    # No PAX record carries a time, so nothing but the clamped header field can vary.
    assert not any(k in m.pax_headers for m in members.values() for k in ("mtime", "atime"))
    assert not any("ctime" in m.pax_headers for m in members.values())


def test_without_clamp_times_are_kept(tmp_path: Path) -> None:
    _every_kind(tmp_path)
    _set_times(tmp_path)
    _, members = _members(tmp_path, None)
    assert members["dir/sub/new"].mtime == CLAMP + 3600 and members["dir/old"].mtime == OLD
    assert members["far"].pax_headers["mtime"] == str(FAR)


def test_clamped_layers_of_trees_made_at_other_times_are_identical(tmp_path: Path) -> None:
    """Two trees with the same content made at different times (access times too) give one
    byte stream once clamped below both: the layer depends on nothing else that varies."""
    first, second = tmp_path / "first", tmp_path / "second"
    for root, base in ((first, CLAMP + 10), (second, CLAMP + 99999)):
        root.mkdir()
        _every_kind(root)
        for i, path in enumerate(sorted(root.rglob("*"), key=lambda p: -len(p.parts))):
            os.utime(path, (base + 7 * i, base + i), follow_symlinks=False)
    assert _members(first, None)[0] != _members(second, None)[0]
    assert _members(first, CLAMP)[0] == _members(second, CLAMP)[0]


def test_file_named_like_a_whiteout_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".wh.foo").write_bytes(b"")
    with pytest.raises(LayerError, match=r"\.wh\.foo"):
        write_layer(tmp_path, io.BytesIO(), Compression.NONE)


def test_overlay_redirect_is_refused(tmp_path: Path) -> None:
    (tmp_path / "moved").mkdir()
    os.setxattr(tmp_path / "moved", "trusted.overlay.redirect", b"/old")
    with pytest.raises(LayerError, match="redirect_dir=off"):
        write_layer(tmp_path, io.BytesIO(), Compression.NONE)


def test_socket_skipped_and_empty_dir_gives_empty_tar(tmp_path: Path) -> None:
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    try:
        data, _ = _write(tmp_path)
    finally:
        s.close()
    assert data == b"\0" * 1024
