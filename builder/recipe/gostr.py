"""Go string semantics the BuildKit parser relies on, reproduced in Python.

BuildKit is written in Go, and several of its parsing rules are really Go library rules:
which characters `unicode.IsSpace` accepts, how `strconv.Quote` escapes, what
`encoding/json` rejects, and how Go treats a byte that is not valid UTF-8. Python's
built-ins differ in small ways (`str.isspace` accepts U+001C..U+001F, `json` accepts NaN,
`repr` quotes differently), so the parser uses these helpers instead.

Text that came from bytes which were not valid UTF-8 is expected to be decoded with
`surrogateescape`: the raw byte 0xNN is then the character U+DCNN ("a raw byte" below).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata

# unicode.IsSpace: the ASCII blanks plus NEL, NBSP and the Unicode White_Space letters.
GO_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The bytes that Go code calling unicode.IsSpace(rune(b)) on single bytes treats as blank.
GO_BYTE_SPACE = "\t\n\x0b\x0c\r \x85\xa0"

_RAW_BYTE_LO, _RAW_BYTE_HI = 0xDC80, 0xDCFF
_STRAY_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")
_SIMPLE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_trim_space(text: str) -> str:
    """strings.TrimSpace."""
    return text.strip(GO_SPACE)


def clean_surrogates(text: str) -> str:
    """Replace lone surrogates that cannot stand for a raw byte with U+FFFD.

    A Go string cannot hold them; only U+DC80..U+DCFF (raw bytes) have a meaning here.
    """
    if _STRAY_SURROGATE.search(text) is None:
        return text
    return _STRAY_SURROGATE.sub("\ufffd", text)


def to_byte_chars(text: str) -> str:
    """The UTF-8 bytes of `text`, one character per byte (U+0000..U+00FF).

    Some BuildKit loops index a Go string byte by byte and turn each byte into a rune;
    running the same loop over this view reproduces them, mojibake included.
    """
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def from_byte_chars(chars: str) -> str:
    """Inverse of to_byte_chars: invalid UTF-8 comes back as raw-byte surrogates."""
    return chars.encode("latin-1").decode("utf-8", "surrogateescape")


def raw_bytes_to_replacement(text: str) -> str:
    """What Go does when it decodes runes: every invalid byte becomes U+FFFD."""
    if _ANY_SURROGATE.search(text) is None:
        return text
    return _ANY_SURROGATE.sub("\ufffd", text)


def go_lower(text: str) -> str:
    """strings.ToLower: simple (one-to-one) case mapping, invalid bytes become U+FFFD."""
    if text.isascii():
        return text.lower()
    out = []
    for ch in raw_bytes_to_replacement(text):
        low = ch.lower()
        # Only U+0130 has a multi-character full lowercase; Go's simple mapping gives "i".
        out.append(low if len(low) == 1 else "i")
    return "".join(out)


def _is_go_print(ch: str) -> bool:
    # strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def go_quote(text: str) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        esc = _SIMPLE_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif _RAW_BYTE_LO <= code <= _RAW_BYTE_HI:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif _is_go_print(ch):
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


class NotStringArray(ValueError):
    """Valid JSON, but not an array of strings (BuildKit makes this a hard error)."""


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # Go rejects NaN and Infinity


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")  # Go: UnmarshalTypeError, so not JSON
    return value


_JSON_SPACE = " \t\n\r"  # the only blanks JSON allows around a value
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, parse_int=_finite)


def go_json_strings(rest: str) -> list[str] | None:
    """BuildKit's parseJSON: the argv of an exec-form instruction, or None for shell form.

    Like Go's json.Unmarshal (BuildKit 0.15 and later), the whole text must be one JSON
    value: `RUN ["a"] x` is shell form. Raises NotStringArray for a valid array holding
    anything but strings.
    """
    rest = rest.lstrip(GO_SPACE)
    if not rest.startswith("["):
        return None
    try:
        value, end = _DECODER.raw_decode(rest)
    except (ValueError, RecursionError):
        return None
    if rest[end:].strip(_JSON_SPACE):  # Unmarshal: "invalid character after top-level value"
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise NotStringArray("JSON array form must hold strings only")
    # Go decodes invalid UTF-8 and unpaired \uD800 escapes as U+FFFD.
    return [raw_bytes_to_replacement(item) for item in value]
