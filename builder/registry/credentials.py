"""Registry credentials in docker's config.json (STUB: the interface only).

The real module reads and writes $DOCKER_CONFIG/config.json, else ~/.docker/config.json:
`auths` (base64 "user:password", identitytoken), `credsStore` and `credHelpers` through the
`docker-credential-*` helpers. This stub fixes the interface: no credentials anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # or a refresh token when identity_token is set
    identity_token: str | None = None  # an OAuth2 refresh token (docker login via a browser)


def credentials_for(host: str) -> Credentials | None:
    """The stored credentials for a registry host (docker.io is looked up as docker does)."""
    return None


def store_credentials(host: str, credentials: Credentials) -> str:
    """Keep credentials for HOST (a helper if one is configured, else config.json); returns
    where they went, for the message `builder login` prints."""
    raise NotImplementedError


def erase_credentials(host: str) -> bool:
    """Forget HOST's credentials; False when there were none."""
    raise NotImplementedError
