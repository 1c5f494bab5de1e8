"""Image references ("[registry[:port]/]path[:tag][@digest]") with docker's grammar."""

from __future__ import annotations

import re

from builder.errors import UsageError
from builder.image.digest import Digest, DigestError
from builder.record import dataclass

DOCKER_HUB = "docker.io"
# Docker Hub answers under several names; they all mean the same repositories.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# From distribution/reference's regexp.go.
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])"
    r"(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_MAX_NAME = 255


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"invalid image reference {text!r}: {why}")


@dataclass(frozen=True)
class Reference:
    domain: str | None  # as written; None means Docker Hub
    path: str  # "library/busybox" or "busybox" as written (see .repository)
    tag: str | None
    digest: Digest | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        if not text:
            raise _bad(text, "empty name")
        rest, digest = text, None
        if "@" in rest:
            rest, raw = rest.split("@", 1)
            try:
                digest = Digest(raw)
            except DigestError:
                raise _bad(text, f"bad digest {raw!r}") from None
        tag = None
        # A ':' after the last '/' is a tag; one before it belongs to a registry port.
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise _bad(text, f"bad tag {tag!r} (letters, digits, '_', '.', '-'; max 128)")
        domain = None
        parts = rest.split("/")
        first = parts[0]
        if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
            if not _DOMAIN.fullmatch(first):
                raise _bad(text, f"bad registry host {first!r}")
            domain, parts = first, parts[1:]
        for part in parts:
            if not _PATH_COMPONENT.fullmatch(part):
                why = "must be lowercase" if part.lower() != part else "bad path component"
                raise _bad(text, f"{why}: {part!r}")
        path = "/".join(parts)
        if len(rest) > _MAX_NAME:
            raise _bad(text, f"name longer than {_MAX_NAME} characters")
        if tag is None and digest is None:
            tag = "latest"
        return cls(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def registry(self) -> str:
        """The registry host to talk to."""
        if self.domain is None or self.domain in _HUB_ALIASES:
            return DOCKER_HUB
        return self.domain

    @property
    def repository(self) -> str:
        """The repository path on the registry ("library/busybox" on Docker Hub)."""
        if self.registry == DOCKER_HUB and "/" not in self.path:
            return f"library/{self.path}"
        return self.path

    @property
    def name(self) -> str:
        """The familiar name: Docker Hub's host and "library/" dropped, others kept."""
        if self.registry == DOCKER_HUB:
            return self.path.removeprefix("library/") if "/" in self.path else self.path
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def normalize(text: str) -> str:
    """The store's ref name for what a user typed: "busybox" -> "busybox:latest"."""
    return str(Reference.parse(text))
