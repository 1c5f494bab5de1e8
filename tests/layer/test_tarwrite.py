import tarfile

import pytest

from builder.layer import tarwrite as tw


def _tarfile_header(
    name: str,
    kind: bytes,
    size: int,
    mtime: int,
    link: str = "",
    uid: int = 0,
    dev: tuple[int, int] = (0, 0),
    xattrs: dict[str, str] | None = None,
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, 0o4755, uid, uid
    info.size, info.mtime, info.linkname, info.uname, info.gname = size, mtime, link, "", ""
    info.devmajor, info.devminor = dev
    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in sorted((xattrs or {}).items())}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("name", "kind", "size", "mtime", "link", "uid", "dev", "xattrs"),
    [
        ("a/b", tarfile.REGTYPE, 5, 1_700_000_000, "", 0, (0, 0), None),
        ("d/", tarfile.DIRTYPE, 0, 1, "", 1000, (0, 0), None),
        ("x" * 150, tarfile.REGTYPE, 0, 0, "", 0, (0, 0), None),  # long name -> PAX path
        ("l", tarfile.SYMTYPE, 0, 5, "/etc/" + "y" * 120, 0, (0, 0), None),  # long target
        ("big", tarfile.REGTYPE, 9 * 2**30, 7, "", 3_000_000, (0, 0), None),  # > 8 GiB, uid
        ("é/ü", tarfile.REGTYPE, 0, 0, "", 0, (0, 0), None),  # non-ASCII -> PAX path
        ("c", tarfile.CHRTYPE, 0, 0, "", 0, (1, 3), None),
        # Not UTF-8 (b"caf\xe9", surrogate-escaped here): the bytes, after hdrcharset=BINARY.
        ("caf\udce9", tarfile.REGTYPE, 0, 0, "", 0, (0, 0), None),
        ("l", tarfile.SYMTYPE, 0, 0, "caf\udce9", 0, (0, 0), None),
        ("new\nline", tarfile.REGTYPE, 0, 0, "", 0, (0, 0), None),
        ("f", tarfile.REGTYPE, 0, 0, "", 0, (0, 0), {"user.a": "v", "security.capability": "\x01"}),
    ],
)
def test_header_bytes_equal_tarfile(
    name: str,
    kind: bytes,
    size: int,
    mtime: int,
    link: str,
    uid: int,
    dev: tuple[int, int],
    xattrs: dict[str, str] | None,
) -> None:
    ours = tw.header(
        name.encode("utf-8", "surrogateescape"),
        kind,
        0o4755,
        uid,
        uid,
        size,
        mtime,
        link.encode("utf-8", "surrogateescape"),
        dev[0],
        dev[1],
        [(k, v.encode()) for k, v in (xattrs or {}).items()],
    )
    assert ours == _tarfile_header(name, kind, size, mtime, link, uid, dev, xattrs)


def test_padding() -> None:
    assert tw.padding(0) == b"" and len(tw.padding(1)) == 511 and tw.padding(512) == b""
