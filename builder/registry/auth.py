"""Registry auth: the WWW-Authenticate challenge, basic auth, and bearer tokens per scope.

The flow is the distribution spec's: a request goes out with what earlier answers taught
(nothing at first), a 401 names the scheme; for `Basic` the stored credentials are sent,
for `Bearer` a token is fetched from the challenge's realm for the scopes the request needs
(with the credentials, or anonymously) and cached per scope until it expires.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

from builder.errors import RegistryError
from builder.record import dataclass
from builder.registry.credentials import Credentials
from builder.registry.settings import Settings
from builder.registry.transport import RetryPolicy, Transport

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})")
# A bare value is read up to the next comma or space: lenient, as some registries send
# unquoted URLs, which RFC 7235's token grammar would cut at the ':'.
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')
_COMMA = re.compile(r"\s*,")
_ESCAPE = re.compile(r"\\(.)")
# A token without `expires_in` lives 60 s (the distribution spec's default); renew early.
_DEFAULT_LIFETIME = 60.0
_SLACK = 10.0


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercased: "basic", "bearer"
    params: Mapping[str, str]  # names lowercased: realm, service, scope, error


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """RFC 7235's `WWW-Authenticate` value: one or more challenges, comma-separated, each a
    scheme and `name=value` or `name="quoted"` params (also comma-separated)."""
    out: list[Challenge] = []
    i = 0
    while True:
        m = _SCHEME.match(header, i)
        if m is None:
            break
        scheme, i = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while (p := _PARAM.match(header, i)) is not None:
            quoted, bare = p.group(2), p.group(3)
            params[p.group(1).lower()] = _ESCAPE.sub(r"\1", quoted) if quoted is not None else bare
            i = p.end()
            comma = _COMMA.match(header, i)
            if comma is None:
                break
            i = comma.end()
            if _PARAM.match(header, i) is None:
                break  # what follows the comma is the next challenge's scheme
        out.append(Challenge(scheme, params))
    return tuple(out)


def basic_header(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class Authorizer:
    """The Authorization header for requests to one registry host."""

    def __init__(
        self,
        host: str,
        settings: Settings,
        credentials: Callable[[], Credentials | None],
        policy: RetryPolicy | None = None,
    ) -> None:
        self.host = host
        self._settings = settings
        self._policy = policy
        self._lookup = credentials
        self._looked_up = False
        self._credentials: Credentials | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # scopes -> (token, expiry)
        self._lock = threading.Lock()

    @property
    def credentials(self) -> Credentials | None:
        if not self._looked_up:  # the helper may be a process: ask once, when needed
            self._credentials = self._lookup()
            self._looked_up = True
        return self._credentials

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """What to send up front, from what an earlier 401 taught (None: nothing yet)."""
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge.scheme == "basic":
                creds = self.credentials
                return basic_header(creds) if creds else None
            return "Bearer " + self._token(challenge, scopes)

    def challenged(self, www_authenticate: str, scopes: tuple[str, ...], sent: str | None) -> str:
        """After a 401: the header to try once more with, or RegistryError when there is
        nothing better to send than what was refused."""
        challenges = {c.scheme: c for c in parse_challenges(www_authenticate)}
        challenge = challenges.get("bearer") or challenges.get("basic")
        if challenge is None:
            raise RegistryError(
                f"registry {self.host} asks for authentication of a kind we do not speak"
                f" ({www_authenticate or 'no WWW-Authenticate header'})"
            )
        with self._lock:
            self._challenge = challenge
            if challenge.scheme == "basic":
                creds = self.credentials
                if creds is None:
                    raise self.refused(scopes)
                header = basic_header(creds)
            else:
                header = self._fresh_token(challenge, scopes, sent)
        if header == sent:
            raise self.refused(scopes)
        return header

    def refused(self, scopes: tuple[str, ...]) -> RegistryError:
        """The error for a request still refused with everything we had."""
        what = " and ".join(_describe(s) for s in scopes) or "access"
        creds = self.credentials
        if creds is None:
            return RegistryError(
                f"registry {self.host} requires authentication for {what}:"
                f" run `builder login {self.host}`"
            )
        return RegistryError(
            f"registry {self.host} refused the credentials of user {creds.username!r} for"
            f" {what} (a wrong password, or no access): run `builder login {self.host}`"
        )

    # -- bearer tokens ---------------------------------------------------------------------

    def _fresh_token(self, challenge: Challenge, scopes: tuple[str, ...], sent: str | None) -> str:
        """The bearer header after a 401. Requests running at once (three layers) all meet
        the first 401: the token one of them fetched meanwhile serves the others, and only
        a token that was itself refused is fetched again. The token asks for the challenge's
        scope too, but is kept under the request's scopes, where `header` looks it up."""
        key = " ".join(scopes)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic() and "Bearer " + cached[0] != sent:
            return "Bearer " + cached[0]
        self._tokens.pop(key, None)
        wanted = tuple(sorted({*scopes, *challenge.params.get("scope", "").split()}))
        return "Bearer " + self._token(challenge, wanted, key)

    def _token(self, challenge: Challenge, scopes: tuple[str, ...], key: str | None = None) -> str:
        key = " ".join(scopes) if key is None else key
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        token, lifetime = self._fetch_token(challenge, scopes)
        self._tokens[key] = (token, time.monotonic() + max(lifetime - _SLACK, lifetime / 2))
        return token

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"registry {self.host} sent a bearer challenge without a realm")
        service = challenge.params.get("service")
        creds = self.credentials
        realm_parts = urlsplit(realm)
        transport = Transport(realm_parts.netloc, self._settings, self._policy)
        headers = {"Accept": "application/json"}
        if creds is not None and creds.identity_token:
            # An OAuth2 refresh token (docker login through a browser): the POST form.
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": "builder",
                "scope": " ".join(scopes),
                **({"service": service} if service else {}),
            }
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = transport.request(
                "POST", realm, headers=headers, body=urlencode(form).encode()
            )
        else:
            query = [("scope", s) for s in scopes]
            if service:
                query.insert(0, ("service", service))
            if creds is not None:
                headers["Authorization"] = basic_header(creds)
                query.append(("account", creds.username))
            sep = "&" if realm_parts.query else "?"
            url = realm + (sep + urlencode(query) if query else "")
            response = transport.request("GET", url, headers=headers)
        if response.status in (401, 403):
            raise self.refused(scopes)
        if response.status != 200:
            raise RegistryError(
                f"the token service of registry {self.host} ({realm_parts.netloc}) answered"
                f" {response.status}"
            )
        try:
            answer = json.loads(response.data)
            token = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or _DEFAULT_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(
                f"the token service of registry {self.host} ({realm_parts.netloc}) sent no token"
            )
        return token, lifetime


def _describe(scope: str) -> str:
    """ "repository:library/busybox:pull" -> "pull of library/busybox"."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not name:
        return scope
    return f"{actions.replace(',', '/')} of {name}"
