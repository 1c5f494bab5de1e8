"""Per-registry settings: mirrors, plain HTTP, TLS trust (STUB: the interface only).

The real module reads the TOML config file ($BUILDER_CONFIG, else /etc/builder/builder.toml
as root or ~/.config/builder/builder.toml) with buildkitd.toml's names, and docker's
/etc/docker/certs.d/HOST:PORT/ca.crt. This stub fixes the interface so the client can be
written against it: no config file, system CAs only, plain HTTP only for loopback hosts.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostSettings:
    """What the config says of one registry host (`host` or `host:port`)."""

    host: str
    mirrors: tuple[str, ...] = ()  # hosts tried first, in order, for pulls
    http: bool = False  # plain HTTP allowed (loopback hosts always are)
    insecure: bool = False  # HTTPS without certificate verification
    ca: tuple[Path, ...] = ()  # extra CA bundles (PEM) trusted for this host


@dataclass(frozen=True)
class Settings:
    hosts: tuple[HostSettings, ...] = ()
    source: Path | None = None  # the file they came from, for messages

    def for_host(self, host: str) -> HostSettings:
        for entry in self.hosts:
            if entry.host == host:
                return entry
        return HostSettings(host)


def load_settings(path: Path | None = None) -> Settings:
    """The settings of the config file at `path` (default: the usual places)."""
    return Settings()


def is_loopback(host: str) -> bool:
    """localhost and 127.0.0.0/8 (and ::1), with or without a port: plain HTTP is allowed."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allows_http(host: str, settings: HostSettings) -> bool:
    return settings.http or is_loopback(host)


def ssl_context(host: str, settings: HostSettings) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """A client context for HOST and the CA sources it trusts (named in TLS errors)."""
    context = ssl.create_default_context()
    return context, ("the system CAs",)
