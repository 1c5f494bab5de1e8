"""Auth: WWW-Authenticate parsing, basic auth, bearer tokens per scope, and `builder login`."""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from builder.cli.main import main
from builder.errors import RegistryError, UsageError
from builder.registry import credentials as credentials_module
from builder.registry.auth import Challenge, parse_challenges
from builder.registry.client import Registry
from builder.registry.credentials import Credentials
from builder.registry.login import registry_host, verify_login
from builder.registry.settings import Settings
from builder.registry.transport import RetryPolicy
from tests.registry.scripted import Answer, FakeImage, Script, Seen

QUICK = RetryPolicy(attempts=2, first_delay=0.01, deadline=5, connect_timeout=2, read_timeout=2)
USER = Credentials("ci", "s3cret")


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


# -- parsing -----------------------------------------------------------------------------


def test_a_bearer_challenge_with_quoted_params() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push"'
    )
    assert parse_challenges(header) == (
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull,push",
            },
        ),
    )


def test_several_challenges_bare_values_escapes_and_case() -> None:
    header = 'Basic realm="Registry \\"Realm\\"", BEARER Realm=https://t/x , error=invalid_token'
    assert parse_challenges(header) == (
        Challenge("basic", {"realm": 'Registry "Realm"'}),
        Challenge("bearer", {"realm": "https://t/x", "error": "invalid_token"}),
    )


def test_a_scheme_without_params_and_an_empty_header() -> None:
    assert parse_challenges("Basic") == (Challenge("basic", {}),)
    assert parse_challenges("") == ()


# -- flows against a scripted registry ---------------------------------------------------


class TokenRegistry:
    """A registry that wants a bearer token for `repository:app:pull`, and its token service
    (which, when `password` is set, wants that user's basic auth)."""

    def __init__(self, script: Script, password: str | None) -> None:
        self.script = script
        self.password = password
        self.image = FakeImage.make(b"layer bytes")
        self.host = ""
        script.on("GET /v2/app/manifests/latest", self.manifest)
        script.on("GET /token", self.token)

    def manifest(self, seen: Seen) -> Answer:
        if seen.headers.get("Authorization") != "Bearer tok-app-pull":
            realm = f'Bearer realm="http://{self.host}/token",service="fake"'
            return Answer(401, headers={"WWW-Authenticate": f'{realm},scope="repository:app:pull"'})
        return Answer(200, self.image.manifest)

    def token(self, seen: Seen) -> Answer:
        query = parse_qs(urlsplit(seen.path).query)
        wanted = None if self.password is None else _basic(Credentials("ci", self.password))
        if wanted is not None and seen.headers.get("Authorization") != wanted:
            return Answer(401)
        assert query["service"] == ["fake"]
        scopes = query.get("scope", [])  # none for a login's check of /v2/
        token = "tok-" + "-".join(s.split(":")[1] + "-" + s.split(":")[2] for s in scopes)
        return Answer(200, json.dumps({"token": token, "expires_in": 300}).encode())


def _registry(host: str, creds: Credentials | None) -> Registry:
    return Registry(host, Settings(), QUICK, lambda: creds)


def test_an_anonymous_token_is_fetched_once_per_scope(script: Script, host: str) -> None:
    fake = TokenRegistry(script, password=None)
    fake.host = host
    repo = _registry(host, None).repository("app")
    assert repo.manifest("latest").data == fake.image.manifest
    assert repo.manifest("latest").data == fake.image.manifest
    # One 401 taught the scheme; the second request sent the cached token up front.
    assert script.count("GET /token") == 1
    assert script.count("GET /v2/app/manifests/latest") == 3


def test_requests_that_met_the_first_401_together_share_one_token(
    script: Script, host: str
) -> None:
    """Three layers start at once and all meet the first 401: the token the first of them
    fetched serves the others; only a token that was itself refused is fetched again."""
    fake = TokenRegistry(script, password=None)
    fake.host = host
    auth = _registry(host, None).auth
    challenge = f'Bearer realm="http://{host}/token",service="fake",scope="repository:app:pull"'
    scopes = ("repository:app:pull",)
    first = [auth.challenged(challenge, scopes, None) for _ in range(3)]
    assert first == ["Bearer tok-app-pull"] * 3
    assert auth.header(scopes) == "Bearer tok-app-pull"  # kept under the request's scopes
    assert script.count("GET /token") == 1
    assert auth.challenged(challenge, scopes, "Bearer old-token") == "Bearer tok-app-pull"
    assert script.count("GET /token") == 1
    with pytest.raises(RegistryError, match="requires authentication"):
        auth.challenged(challenge, scopes, "Bearer tok-app-pull")  # refused: fetched again,
    assert script.count("GET /token") == 2  # and the same token again is given up on


def test_a_token_is_fetched_with_the_stored_credentials(script: Script, host: str) -> None:
    fake = TokenRegistry(script, password=USER.password)
    fake.host = host
    repo = _registry(host, USER).repository("app")
    assert repo.manifest("latest").data == fake.image.manifest
    token_request = next(s for s in script.seen if s.path.startswith("/token"))
    assert token_request.headers["Authorization"] == _basic(USER)


def test_a_token_service_refusing_the_password_is_a_clear_error(script: Script, host: str) -> None:
    fake = TokenRegistry(script, password="other")
    fake.host = host
    with pytest.raises(RegistryError, match="refused the credentials of user 'ci' for pull of app"):
        _registry(host, USER).repository("app").manifest("latest")


def _basic_registry(script: Script, creds: Credentials) -> FakeImage:
    image = FakeImage.make(b"layer bytes")

    def manifest(seen: Seen) -> Answer:
        if seen.headers.get("Authorization") != _basic(creds):
            return Answer(401, headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'})
        return Answer(200, image.manifest)

    script.on("GET /v2/app/manifests/latest", manifest)
    script.on("GET /v2/", manifest)
    return image


def test_basic_auth_sends_the_credentials_after_the_challenge(script: Script, host: str) -> None:
    image = _basic_registry(script, USER)
    repo = _registry(host, USER).repository("app")
    assert repo.manifest("latest").data == image.manifest
    assert repo.manifest("latest").data == image.manifest
    assert script.count("GET /v2/app/manifests/latest") == 3  # basic is sent up front after


def test_basic_auth_without_credentials_says_to_log_in(script: Script, host: str) -> None:
    _basic_registry(script, USER)
    wanted = f"registry {host} requires authentication for pull of app: run `builder login {host}`"
    with pytest.raises(RegistryError, match=wanted):
        _registry(host, None).repository("app").manifest("latest")


def test_basic_auth_with_a_wrong_password_is_refused(script: Script, host: str) -> None:
    _basic_registry(script, USER)
    with pytest.raises(RegistryError, match="refused the credentials of user 'ci'"):
        _registry(host, Credentials("ci", "wrong")).repository("app").manifest("latest")


# -- login -------------------------------------------------------------------------------


def test_login_checks_the_credentials_against_v2(script: Script, host: str) -> None:
    _basic_registry(script, USER)
    verify_login(host, USER, Settings(), QUICK)
    with pytest.raises(RegistryError, match="refused the credentials"):
        verify_login(host, Credentials("ci", "wrong"), Settings(), QUICK)


def test_login_through_a_token_service(script: Script, host: str) -> None:
    fake = TokenRegistry(script, password=USER.password)
    fake.host = host

    def ping(seen: Seen) -> Answer:
        if seen.headers.get("Authorization", "").startswith("Bearer tok-"):
            return Answer(200)
        return Answer(
            401, headers={"WWW-Authenticate": f'Bearer realm="http://{host}/token",service="fake"'}
        )

    script.on("GET /v2/", ping)
    verify_login(host, USER, Settings(), QUICK)
    with pytest.raises(RegistryError, match="refused the credentials"):
        verify_login(host, Credentials("ci", "wrong"), Settings(), QUICK)


def _run(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def test_the_login_verb_keeps_credentials_only_when_the_registry_takes_them(
    script: Script, host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _basic_registry(script, USER)
    kept: list[tuple[str, Credentials]] = []

    def store_credentials(where: str, creds: Credentials) -> str:
        kept.append((where, creds))
        return "/tmp/config.json"

    monkeypatch.setattr(credentials_module, "store_credentials", store_credentials)
    status = _run(["login", "-u", "ci", "--password-stdin", host], "wrong\n", monkeypatch)
    assert status == RegistryError.exit_code
    assert kept == []
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip()]
    status = _run(["login", "-u", "ci", "--password-stdin", host], "s3cret\n", monkeypatch)
    assert status == 0
    assert kept == [(host, USER)]
    assert "Login Succeeded" in capsys.readouterr().out


def test_the_logout_verb_erases_through_the_credentials_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    erased: list[str] = []
    monkeypatch.setattr(credentials_module, "erase_credentials", lambda h: erased.append(h) or True)
    assert _run(["logout", "https://index.docker.io/v1/"], "", monkeypatch) == 0
    assert erased == ["docker.io"]
    assert "Removed the credentials for docker.io" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("ghcr.io", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
    ],
)
def test_the_registry_a_login_names(text: str, host: str) -> None:
    assert registry_host(text) == host


@pytest.mark.parametrize("text", ["", "busybox", "bad host:5000", "https://"])
def test_what_is_not_a_registry(text: str) -> None:
    with pytest.raises(UsageError, match="invalid registry"):
        registry_host(text)
