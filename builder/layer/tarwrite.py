"""Tar headers written by hand: ustar, plus a PAX extended header only when a value needs one.

Hand-written because tarfile builds a TarInfo, a dict and several encodings per entry, which
dominates the time for layers of many small files. The bytes match tarfile's PAX_FORMAT output
for the same entry (the tests check that), so every tar reader understands them.
"""

from __future__ import annotations

from collections.abc import Iterable
from zlib import adler32

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)

REGTYPE = b"0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
_PAXTYPE = b"x"
_DEVICES = (CHRTYPE, BLKTYPE)
_PAX_NAME = b"././@PaxHeader"  # what tarfile writes; a fixed name keeps layers deterministic
_MAGIC = b"ustar\x0000"
_TAIL = b"\0" * (32 + 32)  # empty uname, gname: ownership is numeric in images


def _octal(value: int, width: int) -> bytes | None:
    """`width-1` zero-padded octal digits and a NUL, or None if it does not fit."""
    if value < 0:
        return None
    digits = b"%0*o" % (width - 1, value)
    return digits + b"\0" if len(digits) == width - 1 else None


def _pax_record(keyword: bytes, value: bytes) -> bytes:
    # "<len> <keyword>=<value>\n" where <len> counts its own digits too.
    body = len(keyword) + len(value) + 3
    n = p = 0
    while True:
        n = body + len(str(p))
        if n == p:
            break
        p = n
    return b"%d %s=%s\n" % (p, keyword, value)


_HDRCHARSET_BINARY = b"21 hdrcharset=BINARY\n"


def _utf8(value: bytes) -> bool:
    if value.isascii():
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fallback(name: bytes) -> bytes:
    """The ustar field beside a PAX path: readers use the PAX value; tarfile's choice here."""
    return name.decode("utf-8", "surrogateescape").encode("ascii", "replace")[:100]


# The NULs that round a member's data up to a whole block, by its size modulo BLOCK.
PADDING = tuple(b"\0" * ((BLOCK - rem) % BLOCK) for rem in range(BLOCK))


def padding(size: int) -> bytes:
    """The NULs that round a member's data up to a whole block."""
    return PADDING[size % BLOCK]


def _ustar(
    name: bytes,
    typeflag: bytes,
    mode: bytes,
    uid: bytes,
    gid: bytes,
    size: bytes,
    mtime: bytes,
    linkname: bytes,
    devmajor: bytes,
    devminor: bytes,
) -> bytes:
    buf = bytearray(
        name.ljust(100, b"\0")
        + mode
        + uid
        + gid
        + size
        + mtime
        + b"        "  # checksum placeholder: 8 spaces, as the format says
        + typeflag
        + linkname.ljust(100, b"\0")
        + _MAGIC
        + _TAIL
        + devmajor
        + devminor
    )
    buf += b"\0" * (BLOCK - len(buf))
    buf[148:155] = b"%06o\0" % sum(buf)
    return bytes(buf)


_MAX7 = 8**7  # bounds of the 8- and 12-byte octal fields (7 and 11 digits)
_MAX11 = 8**11
_PLAIN_TAIL = _MAGIC + b"\0" * (BLOCK - 265)  # uname, gname, dev numbers, prefix: NUL
_CHECK_SPACES = sum(b" " * 8) - 1  # the checksum field as summed; adler32's A starts at 1


def _plain(
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes,
) -> bytes:
    """The one ustar block of a member that needs no PAX record and has no device numbers:
    the same bytes as _ustar gives, built in one pass (the common case, once per file).

    The checksum (the sum of the block's bytes) is the low half of zlib's adler32, whose
    first sum is 1 + the bytes' sum modulo 65521: exact here, since ASCII names of at most
    100 bytes and octal digits add up to less than 30,000. One C call instead of a Python
    iteration over every byte.
    """
    head = name.ljust(100, b"\0") + b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (
        mode & 0o7777,
        uid,
        gid,
        size,
        mtime,
    )
    tail = typeflag + linkname.ljust(100, b"\0") + _PLAIN_TAIL
    check = (adler32(tail, adler32(head)) & 0xFFFF) + _CHECK_SPACES
    return b"%s%06o\0 %s" % (head, check, tail)


_FILE_TAIL = REGTYPE + b"\0" * 100 + _PLAIN_TAIL  # a plain file's block after its checksum
# The octal fields, by value: most files of a layer share their mode, owner and mtime, and
# the sizes of small files repeat. Formatting five numbers cost more than the rest of a
# header. Bounded: a cache that grows past _CACHED values starts again.
_IDS: dict[tuple[int, int, int], bytes] = {}
_NUMBERS: dict[int, bytes] = {}  # 12-byte fields (size, mtime): one cache for both
_CHECKS: dict[int, bytes] = {}  # < 65536 keys (a _plain block's sum)
_CACHED = 1 << 14


def file_header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int) -> bytes:
    """header() of a regular file without xattrs (an lstat's uid, gid and size, never
    negative): for most of them, _plain's block from cached fields, the checksum from one
    adler32 over the first 148 bytes and the tail's sum known in advance (the layer
    writer's call for each of 50,000 small files)."""
    if not (
        len(name) <= 100
        and name.isascii()
        and uid < _MAX7
        and gid < _MAX7
        and size < _MAX11
        and 0 <= mtime < _MAX11
    ):
        return header(name, REGTYPE, mode, uid, gid, size, mtime)
    ids = _IDS.get((mode, uid, gid))
    if ids is None:
        if len(_IDS) >= _CACHED:
            _IDS.clear()
        ids = _IDS[mode, uid, gid] = b"%07o\0%07o\0%07o\0" % (mode & 0o7777, uid, gid)
    o_size = _NUMBERS.get(size)
    o_mtime = _NUMBERS.get(mtime)
    if o_size is None or o_mtime is None:
        if len(_NUMBERS) >= _CACHED:
            _NUMBERS.clear()
        o_size = _NUMBERS[size] = b"%011o\0" % size
        o_mtime = _NUMBERS[mtime] = b"%011o\0" % mtime
    head = name.ljust(100, b"\0") + ids + o_size + o_mtime
    check = (adler32(head) & 0xFFFF) + _FILE_SUMS
    o_check = _CHECKS.get(check)
    if o_check is None:
        o_check = _CHECKS[check] = b"%06o\0 " % check
    return head + o_check + _FILE_TAIL


_FILE_SUMS = sum(_FILE_TAIL) + _CHECK_SPACES


def header(
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: Iterable[tuple[str, bytes]] = (),
) -> bytes:
    """The header block(s) of one member: a PAX header first if any value needs one.

    Names are bytes, as the file system has them. PAX says path records are UTF-8; a name
    that is not (b"caf\\xe9") is written as its own bytes after a `hdrcharset=BINARY`
    record, which POSIX defines for exactly this (path, linkpath, uname, gname) and GNU tar
    and Python's tarfile write. Go's archive/tar (BuildKit, containerd) writes the same
    bytes without the record and reads them either way, ignoring the keyword.
    """
    if (
        len(name) <= 100
        and len(linkname) <= 100
        and name.isascii()
        and linkname.isascii()
        and 0 <= uid < _MAX7
        and 0 <= gid < _MAX7
        and 0 <= size < _MAX11
        and 0 <= mtime < _MAX11
        and typeflag not in _DEVICES
        and not xattrs  # a generator is truthy: it takes the general path
    ):
        return _plain(name, typeflag, mode, uid, gid, size, mtime, linkname)
    pax: list[bytes] = []
    if not (_utf8(name) and _utf8(linkname)):
        pax.append(_HDRCHARSET_BINARY)
    if len(name) > 100 or not name.isascii():
        pax.append(_pax_record(b"path", name))
        name = _fallback(name)
    if len(linkname) > 100 or not linkname.isascii():
        pax.append(_pax_record(b"linkpath", linkname))
        linkname = _fallback(linkname)
    o_uid = _octal(uid, 8)
    if o_uid is None:
        pax.append(_pax_record(b"uid", b"%d" % uid))
    o_gid = _octal(gid, 8)
    if o_gid is None:
        pax.append(_pax_record(b"gid", b"%d" % gid))
    o_size = _octal(size, 12)
    if o_size is None:
        pax.append(_pax_record(b"size", b"%d" % size))
    o_mtime = _octal(mtime, 12)
    if o_mtime is None:
        pax.append(_pax_record(b"mtime", b"%d" % mtime))
    for key, value in sorted(xattrs):
        pax.append(_pax_record(b"SCHILY.xattr." + key.encode("utf-8", "surrogateescape"), value))
    zero8 = b"0000000\0"
    main = _ustar(
        name,
        typeflag,
        _octal(mode & 0o7777, 8) or zero8,
        o_uid or zero8,
        o_gid or zero8,
        o_size or b"00000000000\0",
        o_mtime or b"00000000000\0",
        linkname,
        # Only device nodes carry device numbers; others leave the fields NUL, as tarfile does.
        (_octal(devmajor, 8) or zero8) if typeflag in _DEVICES else b"\0" * 8,
        (_octal(devminor, 8) or zero8) if typeflag in _DEVICES else b"\0" * 8,
    )
    if not pax:
        return main
    records = b"".join(pax)
    ext = _ustar(
        _PAX_NAME,
        _PAXTYPE,
        zero8,
        zero8,
        zero8,
        _octal(len(records), 12) or b"00000000000\0",
        b"00000000000\0",
        b"",
        b"\0" * 8,
        b"\0" * 8,
    )
    return ext + records + padding(len(records)) + main
