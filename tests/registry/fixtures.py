"""The registry fixtures, for every test folder (tests/conftest.py loads this as a plugin).

Session-wide, started on first use, stopped at the end of the session:
- `registry` -> str: "127.0.0.1:PORT" of a plain HTTP docker-registry, no auth.
- `registry_ca` -> certs.KeyPair: the session's test CA (`cert_path` is its PEM).
- `tls_registry` -> registries.TlsRegistry: htpasswd basic auth over TLS.

Per test (a session-wide server underneath, its scripted state reset for each test):
- `token_registry` -> registries.TokenRegistry: token auth; `.issuer` is the token issuer.
- `fault_proxy` -> fault_proxy.FaultProxy: a proxy in front of `registry`, no rules yet.
- `repository` -> str: a repository name no other test uses ("test/<test-name>-<n>").

The registries keep what is pushed for the whole session: push under `repository`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.registry.certs import KeyPair, make_ca, make_leaf
from tests.registry.fault_proxy import FaultProxy
from tests.registry.registries import (
    TlsRegistry,
    TokenRegistry,
    start_registry,
    start_tls_registry,
    start_token_registry,
)
from tests.registry.token_issuer import TokenIssuer

USERNAME = "tester"
PASSWORD = "correct horse battery staple"
TOKEN_SERVICE = "builder-test-registry"

_names = itertools.count(1)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real docker-registry (Debian's distribution) on 127.0.0.1, plain HTTP, no auth."""
    process = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield process.address
    finally:
        process.stop()


@pytest.fixture(scope="session")
def registry_ca(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_ca(tmp_path_factory.mktemp("registry-ca"))


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, registry_ca: KeyPair
) -> Iterator[TlsRegistry]:
    directory = tmp_path_factory.mktemp("tls-registry")
    server = make_leaf(registry_ca, directory, "server")
    process, tls = start_tls_registry(directory, registry_ca, server, USERNAME, PASSWORD)
    try:
        yield tls
    finally:
        process.stop()


@pytest.fixture(scope="session")
def _token_registry_session(
    tmp_path_factory: pytest.TempPathFactory, registry_ca: KeyPair
) -> Iterator[TokenRegistry]:
    directory = tmp_path_factory.mktemp("token-registry")
    signing = make_leaf(registry_ca, directory, "token-signer", ips=(), dns=("token-issuer",))
    issuer = TokenIssuer(signing, TOKEN_SERVICE, {USERNAME: PASSWORD}).start()
    try:
        process, token = start_token_registry(directory, issuer, USERNAME, PASSWORD)
        try:
            yield token
        finally:
            process.stop()
    finally:
        issuer.stop()


@pytest.fixture
def token_registry(_token_registry_session: TokenRegistry) -> TokenRegistry:
    """The token-auth registry, its issuer fresh: no requests seen, anonymous pull allowed."""
    _token_registry_session.issuer.reset()
    return _token_registry_session


@pytest.fixture(scope="session")
def _fault_proxy_session(registry: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def fault_proxy(_fault_proxy_session: FaultProxy) -> Iterator[FaultProxy]:
    """The fault proxy in front of `registry`, with no rules and an empty record."""
    _fault_proxy_session.reset()
    yield _fault_proxy_session
    _fault_proxy_session.reset()


@pytest.fixture
def repository(request: pytest.FixtureRequest) -> str:
    """A repository name of this test's own, valid for distribution ([a-z0-9] and '-')."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60].strip("-")
    return f"test/{stem or 'image'}-{next(_names)}"
