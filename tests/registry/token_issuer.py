"""A small docker token issuer, the external half of distribution's `auth: token:` setup.

It speaks the token endpoint a registry client meets after a `WWW-Authenticate: Bearer` challenge:

- `GET /token?service=S&scope=repository:NAME:pull,push[&scope=…]`, with HTTP basic auth or
  without (anonymous);
- `POST /token`, form-encoded, the OAuth2 `password` and `refresh_token` grants (what docker
  uses when it holds an identity token).

Who gets what: a known user with the right password gets every action asked for; a wrong
password gets a 401 from the issuer itself; an anonymous client gets `pull` only, and only
while `allow_anonymous_pull` is true (else a token that grants nothing, so the registry answers
401, as Docker Hub does for a private repository).

The token is a JWT signed ES256 by the key whose certificate is the registry's
`rootcertbundle`. Its header names the key by `kid` in libtrust's key-ID form, which is how
distribution 2.8 finds the key among the certificates of that bundle: the SHA-256 of the
public key's DER (SubjectPublicKeyInfo), cut to 240 bits, in base32 as 12 groups of 4
characters joined by ':'.

Every request is recorded (`requests`, `count()`), so a test can prove a client caches its
token per scope instead of asking for one per request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tests.registry.certs import KeyPair
from tests.registry.serving import LoopbackServer

_P256_BYTES = 32


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key ID distribution's token verifier computes for a key of its rootcertbundle."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Access:
    """One `type:name:actions` scope, as asked for or as granted."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, scope: str) -> Access | None:
        # A repository name holds no ':', but a type may carry a class: "repository(plugin)".
        kind, sep, rest = scope.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered."""

    method: str
    service: str | None
    scopes: tuple[str, ...]
    user: str | None  # None: anonymous (or a refresh token's owner when grant is refresh_token)
    grant: str  # "basic", "anonymous", "password" or "refresh_token"
    status: int
    granted: tuple[Access, ...] = ()


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


@dataclass
class TokenIssuer:
    """The issuer; `start()` serves it on a free loopback port, `stop()` ends it."""

    signing: KeyPair
    service: str
    users: dict[str, str]
    name: str = "builder-test-issuer"  # the `iss` claim, the registry's `issuer`
    expires_in: int = 300
    allow_anonymous_pull: bool = True
    requests: list[TokenRequest] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    _refresh_tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer | None = None

    @property
    def key_id(self) -> str:
        return libtrust_key_id(self.signing.key.public_key())

    @property
    def realm(self) -> str:
        assert self._server, "the issuer is not started"
        return f"http://{self._server.address}/token"

    def start(self) -> TokenIssuer:
        self._server = LoopbackServer(_Handler, self, max_connections=16)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Back to a fresh issuer's state (each test starts from this)."""
        with self._lock:
            self.requests.clear()
            self.issued.clear()
            self._refresh_tokens.clear()
        self.allow_anonymous_pull = True
        self.expires_in = 300

    def count(self, scope: str | None = None) -> int:
        """How many token requests there were (that named `scope`, when given)."""
        with self._lock:
            return sum(1 for r in self.requests if scope is None or scope in r.scopes)

    # -- tokens ---------------------------------------------------------------------------

    def sign(self, subject: str, audience: str, access: tuple[Access, ...]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        claims = {
            "iss": self.name,
            "sub": subject,
            "aud": audience,
            "exp": now + self.expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [a.claim() for a in access],
        }
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self.signing.key.sign(signed.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS wants the raw r||s, not DER
        raw = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
        return f"{signed}.{_b64url(raw)}"

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (header, claims) of a token this issuer signed; raises if the signature fails."""
        head, body, signature = token.split(".")
        raw = _unb64url(signature)
        der = encode_dss_signature(
            int.from_bytes(raw[:_P256_BYTES], "big"), int.from_bytes(raw[_P256_BYTES:], "big")
        )
        try:
            self.signing.key.public_key().verify(
                der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature as e:
            raise AssertionError("the token's signature does not verify") from e
        return json.loads(_unb64url(head)), json.loads(_unb64url(body))

    def grant(self, user: str | None, scopes: tuple[str, ...]) -> tuple[Access, ...]:
        granted = []
        for scope in scopes:
            wanted = Access.parse(scope)
            if wanted is None:
                continue
            if user is not None:
                granted.append(wanted)
            elif self.allow_anonymous_pull and "pull" in wanted.actions:
                granted.append(Access(wanted.type, wanted.name, ("pull",)))
        return tuple(granted)

    def answer(
        self, method: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one request; records it."""
        service = (query.get("service") or [None])[0]
        scopes: tuple[str, ...] = tuple(query.get("scope", []))
        if method == "POST":  # OAuth2 sends its scopes space-separated in one field
            scopes = tuple(s for field_ in scopes for s in field_.split())
        if method == "POST":
            grant = (query.get("grant_type") or ["?"])[0]
        else:
            grant = "basic" if authorization else "anonymous"
        user, status, granted = None, 200, ()
        try:
            grant, user = self._authenticate(method, query, authorization)
            granted = self.grant(user, scopes)
            token = self.sign(user or "", service or self.service, granted)
            body: dict[str, Any] = {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
            }
            if method == "POST" and user is not None:
                refresh = (query.get("refresh_token") or [None])[0] or secrets.token_hex(16)
                with self._lock:
                    self._refresh_tokens[refresh] = user
                body["refresh_token"] = refresh
                body["scope"] = " ".join(scopes)
            with self._lock:
                self.issued.append(token)
        except _Refused as refused:
            status, body = refused.status, refused.body
        with self._lock:
            self.requests.append(
                TokenRequest(method, service, scopes, user, grant, status, granted)
            )
        return status, body

    def _authenticate(
        self, method: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[str, str | None]:
        if method == "POST":
            kind = (query.get("grant_type") or [""])[0]
            if kind == "password":
                user = (query.get("username") or [""])[0]
                self._check(user, (query.get("password") or [""])[0])
                return "password", user
            if kind == "refresh_token":
                with self._lock:
                    owner = self._refresh_tokens.get((query.get("refresh_token") or [""])[0])
                if owner is None:
                    raise _Refused(400, {"error": "invalid_grant"})
                return "refresh_token", owner
            raise _Refused(400, {"error": "unsupported_grant_type"})
        if authorization is None:
            return "anonymous", None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise _Refused(401, _unauthorized("only basic auth is understood here"))
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise _Refused(401, _unauthorized("malformed basic auth")) from e
        self._check(user, password)
        return "basic", user

    def _check(self, user: str, password: str) -> None:
        if not secrets.compare_digest(self.users.get(user, "\0"), password):
            raise _Refused(401, _unauthorized("incorrect username or password"))


def _unauthorized(message: str) -> dict[str, Any]:
    return {"errors": [{"code": "UNAUTHORIZED", "message": message, "detail": None}]}


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # an idle connection does not hold a thread for long

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str, query: dict[str, list[str]]) -> None:
        issuer: TokenIssuer = self.server.owner  # type: ignore[attr-defined]
        if urllib.parse.urlsplit(self.path).path != "/token":
            status, body = 404, {"errors": [{"code": "NOT_FOUND", "message": self.path}]}
        else:
            status, body = issuer.answer(method, query, self.headers.get("Authorization"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="builder-test-issuer"')
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET", urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(min(length, 1 << 16)).decode(errors="replace")
        self._serve("POST", urllib.parse.parse_qs(form))
