"""Per-registry settings: mirrors, plain HTTP, TLS trust.

The config file is TOML (builder/config.py says where it is). Its registry sections use
the names of BuildKit's buildkitd.toml:

    [registry."docker.io"]
    mirrors = ["127.0.0.1:5000"]       # host[:port] only: no scheme, no path
    [registry."127.0.0.1:5000"]
    http = true                        # plain HTTP (loopback hosts never need it)
    insecure = false                   # HTTPS without certificate verification
    ca = ["/path/ca.pem"]              # extra CAs, relative paths from the file's folder
    [[registry."127.0.0.1:5000".keypair]]
    key = "/path/client.key"
    cert = "/path/client.cert"

Other keys and tables are ignored: the file also holds the settings of other features.
TLS trust also comes from docker's /etc/docker/certs.d/HOST[:PORT]/ as docker reads it:
every *.crt is a CA, every *.cert with its *.key is a client certificate.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from pathlib import Path
from typing import Any

from builder.config import config_path, load_document
from builder.errors import UsageError
from builder.record import dataclass

# Where docker keeps per-registry TLS files; BUILDER_CERTS_D moves it, for tests only.
DOCKER_CERTS_D = Path("/etc/docker/certs.d")

# Docker Hub answers to several names; its settings are kept under DOCKER_HUB, and its
# distribution API lives at DOCKER_HUB_ENDPOINT.
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_ENDPOINT})


@dataclass(frozen=True)
class HostSettings:
    """What the config says of one registry host (`host` or `host:port`)."""

    host: str
    mirrors: tuple[str, ...] = ()  # hosts tried first, in order, for pulls
    http: bool = False  # plain HTTP allowed (loopback hosts always are)
    insecure: bool = False  # HTTPS without certificate verification
    ca: tuple[Path, ...] = ()  # extra CA bundles (PEM) trusted for this host
    keypairs: tuple[tuple[Path, Path], ...] = ()  # client certificates: (cert, key)
    source: Path | None = None  # the config file these came from, for messages


@dataclass(frozen=True)
class Settings:
    hosts: tuple[HostSettings, ...] = ()
    source: Path | None = None  # the file they came from, for messages

    def for_host(self, host: str) -> HostSettings:
        """HOST's section (Docker Hub's names share one), or the defaults."""
        wanted = canonical_host(host)
        for entry in self.hosts:
            if canonical_host(entry.host) == wanted:
                return entry
        return HostSettings(host, source=self.source)


def canonical_host(host: str) -> str:
    """The name settings are looked up by: lower case, Docker Hub's aliases as docker.io."""
    host = host.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def endpoint_host(host: str) -> str:
    """The host that serves HOST's distribution API (docker.io's is registry-1.docker.io)."""
    return DOCKER_HUB_ENDPOINT if canonical_host(host) == DOCKER_HUB else host


def load_settings(path: Path | None = None) -> Settings:
    """The registry settings of the config file at `path` (default: the usual places).

    A missing file at a default place means no settings; a missing file that was named
    (`path` or $BUILDER_CONFIG), bad TOML or a value of the wrong type is a UsageError.
    """
    document, path = load_document(path)
    if not document:
        return Settings()
    return Settings(_registry_sections(document.get("registry", {}), path), path)


def _registry_sections(table: object, path: Path) -> tuple[HostSettings, ...]:
    if not isinstance(table, dict):
        raise UsageError(f'{path}: `registry` must be a table of [registry."HOST"] sections')
    hosts: dict[str, HostSettings] = {}
    for host, section in table.items():
        where = f'{path}: [registry."{host}"]'
        if not _is_host(host):
            raise UsageError(f"{where}: the name must be a host[:port], without scheme or path")
        if not isinstance(section, dict):
            raise UsageError(f"{where} must be a table")
        key = canonical_host(host)
        if key in hosts:
            raise UsageError(f'{where} names the same registry as [registry."{hosts[key].host}"]')
        hosts[key] = _host_settings(host, section, path, where)
    return tuple(hosts.values())


def _host_settings(host: str, section: dict[str, Any], path: Path, where: str) -> HostSettings:
    mirrors = _strings(section, "mirrors", where)
    for mirror in mirrors:
        if not _is_host(mirror):
            raise UsageError(
                f"{where}: mirror {mirror!r} must be a host[:port], without scheme or path"
            )
    keypairs = []
    pairs = section.get("keypair", [])
    if not isinstance(pairs, list) or not all(isinstance(p, dict) for p in pairs):
        raise UsageError(f"{where}: `keypair` must be a list of tables with key and cert")
    for pair in pairs:
        cert, key = pair.get("cert"), pair.get("key")
        if not isinstance(cert, str) or not isinstance(key, str):
            raise UsageError(f"{where}: each `keypair` needs `cert` and `key` file names")
        keypairs.append((_relative_to(path, cert), _relative_to(path, key)))
    return HostSettings(
        host=host,
        mirrors=tuple(mirrors),
        http=_bool(section, "http", where),
        insecure=_bool(section, "insecure", where),
        ca=tuple(_relative_to(path, name) for name in _strings(section, "ca", where)),
        keypairs=tuple(keypairs),
        source=path,
    )


def _strings(section: dict[str, Any], key: str, where: str) -> list[str]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"{where}: `{key}` must be a list of strings")
    return value


def _bool(section: dict[str, Any], key: str, where: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{where}: `{key}` must be true or false")
    return value


def _relative_to(config: Path, name: str) -> Path:
    return config.parent / name if not os.path.isabs(name) else Path(name)


def _is_host(name: str) -> bool:
    return bool(name) and "/" not in name and not any(c.isspace() for c in name)


def is_loopback(host: str) -> bool:
    """localhost and 127.0.0.0/8 (and ::1), with or without a port: plain HTTP is allowed."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allows_http(host: str, settings: HostSettings) -> bool:
    return settings.http or is_loopback(host)


def certs_d_root() -> Path:
    return Path(os.environ.get("BUILDER_CERTS_D") or DOCKER_CERTS_D)


def _certs_d_dirs(host: str, root: Path) -> list[Path]:
    """HOST's folders under certs.d: for Docker Hub, the folder of each of its names."""
    names = sorted(DOCKER_HUB_ALIASES) if canonical_host(host) == DOCKER_HUB else [host]
    return [root / name for name in names if (root / name).is_dir()]


def ssl_context(
    host: str, settings: HostSettings, certs_d: Path | None = None
) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """A client context for HOST and the CA sources it trusts (named in TLS errors).

    It trusts the system CAs, every *.crt in certs.d/HOST and the config's `ca`; it presents
    the first client certificate found (the config's `keypair`, then certs.d's *.cert with its
    *.key: an SSLContext holds one). `insecure = true` turns verification off.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    sources = ["the system CAs"]
    keypairs = list(settings.keypairs)
    for folder in _certs_d_dirs(host, certs_d or certs_d_root()):
        for ca in sorted(folder.glob("*.crt")):
            _load_ca(context, ca, str(ca))
            sources.append(str(ca))
        keypairs.extend(_certs_d_keypairs(folder))
    for ca in settings.ca:
        where = f"ca = {ca} in {settings.source}"
        _load_ca(context, ca, where)
        sources.append(where)
    if keypairs:
        cert, key = keypairs[0]
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(
                f"cannot load client certificate {cert} with key {key}: {_why(err)}"
            ) from None
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context, tuple(sources)


def _certs_d_keypairs(folder: Path) -> list[tuple[Path, Path]]:
    """Docker's rule: each NAME.cert needs NAME.key beside it, and each NAME.key a NAME.cert."""
    pairs = []
    for cert in sorted(folder.glob("*.cert")):
        key = cert.with_suffix(".key")
        if not key.exists():
            raise UsageError(f"client certificate {cert} has no key {key.name} beside it")
        pairs.append((cert, key))
    for key in sorted(folder.glob("*.key")):
        if not key.with_suffix(".cert").exists():
            raise UsageError(f"client key {key} has no certificate {key.stem}.cert beside it")
    return pairs


def _load_ca(context: ssl.SSLContext, path: Path, where: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as err:
        raise UsageError(f"cannot load CA {where}: {_why(err)}") from None


def _why(err: OSError | ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLError):
        return err.reason or str(err)
    return err.strerror or str(err)


def trust_hint(host: str, settings: HostSettings, certs_d: Path | None = None) -> str:
    """How to make HOST's certificate trusted, for the TLS failure message."""
    config = settings.source or config_path()[0]
    folder = (certs_d or certs_d_root()) / host
    return (
        f'To trust its CA, put it in {folder}/ca.crt, or add `ca = ["/path/ca.pem"]` under'
        f' [registry."{canonical_host(host)}"] in {config}'
    )
