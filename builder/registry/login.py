"""`builder login`: the registry a user names, and a check that it takes the credentials."""

from __future__ import annotations

from urllib.parse import urlsplit

from builder.errors import UsageError
from builder.image.reference import DOCKER_HUB, Reference
from builder.registry.client import Registry
from builder.registry.credentials import Credentials
from builder.registry.settings import Settings, load_settings
from builder.registry.transport import RetryPolicy

_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def registry_host(text: str) -> str:
    """The host a login names, as docker accepts it: "ghcr.io", "localhost:5000",
    "https://index.docker.io/v1/" (Docker Hub's names are all "docker.io")."""
    value = text.strip()
    netloc = urlsplit(value).netloc if "://" in value else value.split("/", 1)[0]
    bad = UsageError(f"invalid registry {text!r}: expected a host such as ghcr.io")
    if not netloc:
        raise bad
    if netloc.lower() in _HUB_NAMES:
        return DOCKER_HUB
    # The host grammar of image references: a name with a '.' or ':', or localhost.
    if not ("." in netloc or ":" in netloc or netloc == "localhost"):
        raise bad
    try:
        return Reference.parse(f"{netloc}/x").registry
    except UsageError:
        raise bad from None


def verify_login(
    host: str,
    credentials: Credentials,
    settings: Settings | None = None,
    policy: RetryPolicy | None = None,
) -> None:
    """GET /v2/ with these credentials (through the token service if the registry has one):
    RegistryError unless the registry takes them. An open registry asks for nothing, so
    there nothing can be checked, as with docker."""
    registry = Registry(host, settings or load_settings(), policy, lambda: credentials)
    registry.check_login()
