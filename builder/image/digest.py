"""Content digests: "algorithm:hex", validated once at the edge and then trusted."""

from __future__ import annotations

import hashlib
import re

from builder.errors import UsageError

# Hex lengths of the algorithms the OCI image spec registers.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha512):([0-9a-f]+)")


class DigestError(UsageError, ValueError):
    """A string that is not a valid digest (a UsageError for the CLI, a ValueError inside)."""


class Digest(str):
    """A validated digest such as "sha256:<64 lowercase hex>"; it *is* its string form."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        match = _DIGEST_RE.fullmatch(value)
        if match is None or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
            raise DigestError(
                f"invalid digest {value!r}: expected sha256:<64 hex> or sha512:<128 hex>"
            )
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Validate `value`; raises DigestError (a UsageError and a ValueError)."""
        return cls(value)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls.from_hash(hashlib.new(algorithm, data))

    @classmethod
    def from_hash(cls, h: hashlib._Hash) -> Digest:
        """The digest of a finished hashlib object (streams hash as they go)."""
        return cls(f"{h.name}:{h.hexdigest()}")

    @classmethod
    def from_hex(cls, hex_: str, algorithm: str = "sha256") -> Digest:
        return cls(f"{algorithm}:{hex_}")

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def hex(self) -> str:
        return self.split(":", 1)[1]

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm, to verify a stream against it."""
        return hashlib.new(self.algorithm)

    def __repr__(self) -> str:
        return f"Digest({str(self)!r})"
