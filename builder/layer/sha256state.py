"""SHA-256 whose running state can be saved and resumed (for layer/frames' midstates).

hashlib cannot export a hash's state. OpenSSL's low-level SHA256_Init/Update/Final work on
a plain SHA256_CTX struct, which can: a layer rebuilt after an edit resumes hashing its tar
(the diff ID) at the first frame that changed, from the state saved at that frame's start,
instead of at byte 0. The functions come from the libcrypto hashlib itself loaded (found
in this process's maps, so it is the same library and the same build), through ctypes,
whose calls release the GIL as hashlib's do. Where that library is not found (a Python
without OpenSSL, or another layout) `available()` is False and callers use hashlib.

A saved state is the struct's 112 bytes, as hex. Its length field (Nl, Nh: the bits hashed
so far) is checked against the offset the caller expects on `resume`, so a state saved for
another place of the stream is refused rather than used.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from typing import Any

CTX_SIZE = 112  # SHA256_CTX: h[8], Nl, Nh, data[16], num, md_len (all 32-bit)
_LENGTHS = struct.Struct("<II")  # Nl, Nh, after h[8]
_NUM = struct.Struct("<II")  # num, md_len, at 104


class StateError(ValueError):
    """A saved state that does not read as one for the expected offset."""


@functools.cache
def _lib() -> Any | None:
    import _hashlib  # the module that links libcrypto; imported by hashlib anyway

    path = None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and "/libcrypto.so" in fields[5]:
                    path = fields[5]
                    break
    except OSError:
        return None
    if path is None or getattr(_hashlib, "get_fips_mode", lambda: 0)():
        return None  # (FIPS mode forbids the low-level calls)
    try:
        lib = ctypes.CDLL(path)  # already loaded: the same handle, nothing new mapped
        for name in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
            getattr(lib, name).restype = ctypes.c_int
        lib.SHA256_Update.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    except (OSError, AttributeError):
        return None
    return lib


def available() -> bool:
    return _lib() is not None


class Sha256:
    """A SHA-256 (as hashlib's) that can `save()` its state and be made from one.
    Only made when `available()`."""

    def __init__(self) -> None:
        lib = _lib()
        assert lib is not None, "check available() first"
        self._lib: Any = lib
        self._ctx = ctypes.create_string_buffer(CTX_SIZE)
        self._lib.SHA256_Init(self._ctx)
        self.offset = 0  # bytes hashed

    @classmethod
    def resume(cls, state: str, offset: int) -> Sha256:
        """The hash of a stream's first `offset` bytes, from their saved state."""
        try:
            raw = bytes.fromhex(state)
        except ValueError:
            raise StateError("not hex") from None
        if len(raw) != CTX_SIZE:
            raise StateError("wrong length")
        low, high = _LENGTHS.unpack_from(raw, 32)
        num, md_len = _NUM.unpack_from(raw, 104)
        if (high << 32 | low) != offset * 8 or num != offset % 64 or md_len != 32:
            raise StateError(f"not a state after {offset} bytes")
        new = cls()
        ctypes.memmove(new._ctx, raw, CTX_SIZE)
        new.offset = offset
        return new

    def update(self, data: bytes | bytearray | memoryview) -> None:
        chunk: bytes | ctypes.Array[ctypes.c_char]
        if isinstance(data, bytes):
            chunk = data
        elif (view := memoryview(data)).readonly or not view.c_contiguous:
            chunk = view.tobytes()
        else:  # hashed where it lies, not copied (layer/write maps files so)
            chunk = (ctypes.c_char * view.nbytes).from_buffer(view.cast("B"))
        if chunk:
            self._lib.SHA256_Update(self._ctx, chunk, len(chunk))
            self.offset += len(chunk)

    def save(self) -> str:
        return self._ctx.raw.hex()

    def digest(self) -> bytes:
        ctx = ctypes.create_string_buffer(self._ctx.raw, CTX_SIZE)  # Final ends a copy
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, ctx)
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    @property
    def name(self) -> str:
        return "sha256"
