"""TLS: a registry whose CA is not trusted is a clear error that says how to trust it; one
whose CA the settings give is reached over HTTPS with the settings' context."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.registry import transport
from builder.registry.client import Registry
from builder.registry.settings import HostSettings, Settings
from builder.registry.transport import RetryPolicy
from tests.registry.scripted import FakeImage, Script, serve

QUICK = RetryPolicy(attempts=1, connect_timeout=2, read_timeout=2)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_host(certificate: tuple[Path, Path]) -> Iterator[tuple[str, Script]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    script = Script()
    FakeImage.make(b"layer").serve_on(script, "app")
    with serve(script, context) as host:
        yield host, script


def test_an_untrusted_ca_is_named_with_the_ways_to_trust_one(
    tls_host: tuple[str, Script],
) -> None:
    host = tls_host[0]
    with pytest.raises(RegistryError) as caught:
        Registry(host, Settings(), QUICK, lambda: None).repository("app").manifest("latest")
    message = str(caught.value)
    assert message.startswith(f"TLS verification of registry {host} failed (")
    assert "CAs tried: the system CAs." in message
    assert f"/etc/docker/certs.d/{host}/ca.crt" in message
    assert f'[registry."{host}"]' in message


def test_a_ca_the_settings_trust_is_used(
    tls_host: tuple[str, Script],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, script = tls_host
    asked: list[HostSettings] = []

    def trusting(name: str, settings: HostSettings) -> tuple[ssl.SSLContext, tuple[str, ...]]:
        asked.append(settings)
        return ssl.create_default_context(cafile=str(certificate[0])), (str(certificate[0]),)

    monkeypatch.setattr(transport, "ssl_context", trusting)
    settings = Settings((HostSettings(host, ca=(certificate[0],)),))
    fetched = Registry(host, settings, QUICK, lambda: None).repository("app").manifest("latest")
    assert fetched.data == FakeImage.make(b"layer").manifest
    assert asked == [settings.for_host(host)]
    assert [s.path for s in script.seen] == ["/v2/app/manifests/latest"]


def test_a_plain_http_loopback_registry_never_builds_a_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The system CAs take ~0.1 s to load: a loopback registry that answers a TLS handshake
    in plain text is asked over HTTP at once, without them (and, as before, without a
    failed HTTPS request)."""
    script = Script()
    FakeImage.make(b"layer").serve_on(script, "app")

    def refused(name: str, settings: HostSettings) -> tuple[ssl.SSLContext, tuple[str, ...]]:
        raise AssertionError(f"a TLS context was built for plain-HTTP {name}")

    monkeypatch.setattr(transport, "ssl_context", refused)
    with serve(script) as host:
        repository = Registry(host, Settings(), QUICK, lambda: None).repository("app")
        fetched = repository.manifest("latest")
    assert fetched.data == FakeImage.make(b"layer").manifest
    assert [s.path for s in script.seen] == ["/v2/app/manifests/latest"]
