"""Platforms (os/arch/variant) as OCI spells them: the host's, and one parsed from a flag.

Spellings are normalized as containerd's `platforms.Normalize` does, which is what BuildKit
compares: "aarch64" is "arm64", and arm64's "v8" is no variant at all, so "linux/arm64"
and "linux/arm64/v8" are the same platform.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from builder.image import fields
from builder.record import dataclass


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    @classmethod
    def from_json(cls, value: Any) -> Platform:
        m = fields.obj(value, "platform")
        return cls(
            architecture=fields.req_str(m, "architecture", "platform"),
            os=fields.req_str(m, "os", "platform"),
            variant=fields.opt_str(m, "variant", "platform"),
            os_version=fields.opt_str(m, "os.version", "platform"),
            os_features=fields.opt_strs(m, "os.features", "platform") or (),
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def host(cls, machine: str | None = None) -> Platform:
        """This machine in OCI/Go terms (x86_64 -> amd64, aarch64 -> arm64, ...)."""
        import platform

        raw = (machine or platform.machine()).lower()
        arch, variant = _HOST_ARCHES.get(raw, (raw, None))
        return cls(architecture=arch, os="linux", variant=variant)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`os/arch[/variant]`, or an os or an arch alone (the rest from the host), normalized;
        ValueError when it is not a platform."""
        parts = text.lower().split("/")
        if len(parts) > 3 or not all(_PART.fullmatch(p) for p in parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        if len(parts) == 1:
            if parts[0] in _KNOWN_OS:
                host = cls.host()
                return cls(host.architecture, parts[0], host.variant)
            parts = ["linux", parts[0]]
        arch, variant = _normalize_arch(parts[1], parts[2] if len(parts) == 3 else None)
        return cls(architecture=arch, os=parts[0], variant=variant)


_PART = re.compile(r"[a-z0-9_.-]+")
_KNOWN_OS = frozenset(
    {
        *("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios"),
        *("js", "linux", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"),
    }
)

# platform.machine() spellings to OCI architecture and variant (normalized).
_HOST_ARCHES: Mapping[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "i686": ("386", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "loongarch64": ("loong64", None),
}


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    """containerd's normalizeArch: the spellings of one architecture made one."""
    if arch == "i386":
        return "386", None
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", None if variant in (None, "v1") else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = None
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in (None, "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = f"v{variant}"
        return "arm", variant
    return arch, variant
