"""TarCuts: where write_layer would cut a tar stream into frames, from the stream's bytes
alone (layer/recompress converts a blob it did not write, and must cut it the same way)."""

from __future__ import annotations

from builder.layer.frames import BLOCK as _BLOCK
from builder.layer.frames import Cutter, data_cuts


class TarCuts:
    """The cut points of a tar stream read from its bytes alone, for a stream that was not
    written by our walker (recompress): `feed` chunks in order; each call returns the
    offsets of the cuts it found, in order. Only headers (and PAX records, which may hold
    a size) are looked at; what follows the end-of-archive blocks is not."""

    def __init__(self) -> None:
        self._cutter = Cutter()
        self._pending = bytearray()  # bytes of what is being gathered, not yet whole
        self._pos = 0  # stream offset of the first byte not yet fed
        self._start = 0  # offset of what is being gathered
        self._need = _BLOCK  # its length: a header block, or a PAX header's records
        self._entry_start = 0
        self._head = b""
        self._pax_size: int | None = None
        self._pax_padded = 0  # > 0: gathering PAX records (of that padded length)
        self._done = False

    def feed(self, chunk: bytes) -> list[int]:
        cuts: list[int] = []
        end = self._pos + len(chunk)
        while not self._done:
            want = self._start + len(self._pending)  # the next byte to gather
            if want >= end:
                break
            at = want - self._pos
            take = min(self._need - len(self._pending), len(chunk) - at)
            self._pending += chunk[at : at + take]
            if len(self._pending) < self._need:
                break
            data = bytes(self._pending)
            self._pending.clear()
            if self._pax_padded:
                self._pax_size = _pax_size(data, self._pax_size)
                self._pax_padded = 0
                self._start, self._need = self._start + len(data), _BLOCK
            else:
                self._header(data, self._start, cuts)
        self._pos = end
        return cuts

    def _header(self, block: bytes, offset: int, cuts: list[int]) -> None:
        if not self._head:
            self._entry_start, self._head = offset, block
        if block == bytes(_BLOCK):
            self._done = True  # the end-of-archive blocks: the rest joins the last frame
            return
        kind = block[156:157]
        try:
            size = _number(block[124:136])
        except ValueError:  # not a tar we can read: no more cuts (the bytes pass as they are)
            self._done = True
            return
        data_start = offset + _BLOCK
        padded = -(-size // _BLOCK) * _BLOCK
        if kind in (b"x", b"g", b"L", b"K"):  # a header for the next one: the same entry
            self._start, self._need = data_start + padded, _BLOCK
            if kind == b"x" and padded:
                self._start, self._need, self._pax_padded = data_start, padded, padded
            return
        if self._pax_size is not None:
            size, self._pax_size = self._pax_size, None
            padded = -(-size // _BLOCK) * _BLOCK
        for cut in data_cuts(data_start, size):
            cuts.append(cut)
            self._cutter.cut_at(cut)
        end = data_start + padded
        if self._cutter.after_entry(self._head, self._entry_start, end):
            cuts.append(end)
        self._start, self._need, self._head = end, _BLOCK, b""


def _pax_size(records: bytes, default: int | None) -> int | None:
    """The `size` record of PAX records ("LEN key=value\n" each), if there is one."""
    pos = 0
    while pos < len(records):
        space = records.find(b" ", pos)
        if space < 0 or not records[pos:space].isdigit():
            break
        length = int(records[pos:space])
        if length <= 0:
            break
        key, _, value = records[space + 1 : pos + length - 1].partition(b"=")
        if key == b"size":
            default = int(value)
        pos += length
    return default


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or base-256 when its top bit is set."""
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0
