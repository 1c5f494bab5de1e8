"""The registry settings: the TOML config file, certs.d, and real TLS handshakes with the
SSL context they make (a local TLS server with a certificate from a CA made here)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder.config import config_path, load_document
from builder.errors import UsageError
from builder.registry.settings import (
    HostSettings,
    Settings,
    allows_http,
    canonical_host,
    endpoint_host,
    load_settings,
    ssl_context,
    trust_hint,
)

# -- the config file's path -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BUILDER_CONFIG", "XDG_CONFIG_HOME", "BUILDER_CERTS_D"):
        monkeypatch.delenv(name, raising=False)


def test_builder_config_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUILDER_CONFIG", str(tmp_path / "b.toml"))
    assert config_path(euid=0) == (tmp_path / "b.toml", True)


def test_root_reads_etc() -> None:
    assert config_path(euid=0) == (Path("/etc/builder/builder.toml"), False)


def test_a_user_reads_xdg_config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path(euid=1000) == (tmp_path / "xdg/builder/builder.toml", False)


def test_a_user_without_xdg_reads_dot_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")
    assert config_path(euid=1000) == (tmp_path / ".config/builder/builder.toml", False)


def test_a_missing_default_file_means_no_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("builder.config.SYSTEM_CONFIG", tmp_path / "absent.toml")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings() == Settings()


def test_a_missing_named_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUILDER_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(UsageError, match=r"absent\.toml does not exist"):
        load_settings()


def test_builder_config_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = _write(tmp_path, '[registry."example.com"]\nhttp = true\n')
    monkeypatch.setenv("BUILDER_CONFIG", str(config))
    assert load_settings().for_host("example.com").http


def test_an_empty_file_is_an_empty_document(tmp_path: Path) -> None:
    """Blank (as the benches and tests write it): no settings, and no TOML parser to
    import; a file of comments only is still parsed."""
    assert load_document(_write(tmp_path, " \n\n")) == ({}, tmp_path / "builder.toml")
    assert load_document(_write(tmp_path, "# nothing\n"))[0] == {}
    with pytest.raises(UsageError, match="not valid TOML"):
        load_document(_write(tmp_path, "\n[registry\n"))


# -- what the file says -----------------------------------------------------------------------


def _write(folder: Path, text: str) -> Path:
    path = folder / "builder.toml"
    path.write_text(text)
    return path


def test_the_registry_sections(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[registry."docker.io"]
mirrors = ["127.0.0.1:5000", "mirror.example.com"]
[registry."127.0.0.1:5000"]
http = true
insecure = true
ca = ["/abs/ca.pem", "rel/ca.pem"]
[[registry."127.0.0.1:5000".keypair]]
key = "client.key"
cert = "/abs/client.cert"
""",
    )
    settings = load_settings(path)
    assert settings.source == path
    hub = settings.for_host("docker.io")
    assert hub.mirrors == ("127.0.0.1:5000", "mirror.example.com")
    assert (hub.http, hub.insecure, hub.ca) == (False, False, ())
    local = settings.for_host("127.0.0.1:5000")
    assert (local.http, local.insecure) == (True, True)
    # Relative paths are read from the config file's folder.
    assert local.ca == (Path("/abs/ca.pem"), tmp_path / "rel/ca.pem")
    assert local.keypairs == ((Path("/abs/client.cert"), tmp_path / "client.key"),)
    assert local.source == path


def test_a_host_without_a_section_gets_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, '[registry."a.example"]\nhttp = true\n')
    other = load_settings(path).for_host("b.example")
    assert other == HostSettings("b.example", source=path)


def test_unknown_keys_and_tables_are_ignored(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
top = 1
[worker]
gc = true
[registry."a.example"]
http = true
platforms = ["linux/amd64"]
""",
    )
    assert load_settings(path).for_host("a.example").http


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[registry."h"]\nmirrors = "m.example"', "mirrors"),
        ('[registry."h"]\nmirrors = [1]', "mirrors"),
        ('[registry."h"]\nhttp = "yes"', "http"),
        ('[registry."h"]\ninsecure = 1', "insecure"),
        ('[registry."h"]\nca = "/ca.pem"', "ca"),
        ('[registry."h"]\nkeypair = {key = "k"}', "keypair"),
        ('[[registry."h".keypair]]\nkey = "k"', "keypair"),
        ("registry = 1", "registry"),
        ('[registry]\nh = "x"', 'registry."h"'),
    ],
)
def test_a_wrong_type_names_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message and key in message and "\n" not in message


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[registry."h"]\nhttp = \n')
    with pytest.raises(UsageError, match=r"builder\.toml is not valid TOML.*line 2") as caught:
        load_settings(path)
    assert "\n" not in str(caught.value)


def test_an_unreadable_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "builder.toml").mkdir()
    with pytest.raises(UsageError, match=r"cannot read config file .*builder\.toml"):
        load_settings(tmp_path / "builder.toml")


@pytest.mark.parametrize("mirror", ["https://m.example", "m.example/dockerhub", ""])
def test_a_mirror_is_a_host(tmp_path: Path, mirror: str) -> None:
    path = _write(tmp_path, f'[registry."docker.io"]\nmirrors = ["{mirror}"]\n')
    with pytest.raises(UsageError, match="must be a host"):
        load_settings(path)


def test_a_section_name_is_a_host(tmp_path: Path) -> None:
    path = _write(tmp_path, '[registry."https://a.example"]\nhttp = true\n')
    with pytest.raises(UsageError, match="without scheme or path"):
        load_settings(path)


# -- Docker Hub's names -----------------------------------------------------------------------


@pytest.mark.parametrize("written", ["docker.io", "index.docker.io", "registry-1.docker.io"])
@pytest.mark.parametrize("asked", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_names_share_one_section(tmp_path: Path, written: str, asked: str) -> None:
    path = _write(tmp_path, f'[registry."{written}"]\nmirrors = ["127.0.0.1:5000"]\n')
    assert load_settings(path).for_host(asked).mirrors == ("127.0.0.1:5000",)


def test_two_sections_for_docker_hub_are_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '[registry."docker.io"]\n[registry."index.docker.io"]\n')
    with pytest.raises(UsageError, match="names the same registry"):
        load_settings(path)


def test_docker_hub_endpoint() -> None:
    assert endpoint_host("docker.io") == "registry-1.docker.io"
    assert endpoint_host("index.docker.io") == "registry-1.docker.io"
    assert endpoint_host("quay.io") == "quay.io"
    assert canonical_host("Registry-1.Docker.IO") == "docker.io"


# -- plain HTTP -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:5000", "127.0.0.1", "127.0.0.1:5000", "127.8.9.10:80", "::1",
     "[::1]:5000"],
)  # fmt: skip
def test_loopback_hosts_allow_http(host: str) -> None:
    assert allows_http(host, HostSettings(host))


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1:5000", "localhost.example.com", "128.0.0.1", "[::2]:5000"]
)
def test_other_hosts_need_http_true(host: str) -> None:
    assert not allows_http(host, HostSettings(host))
    assert allows_http(host, HostSettings(host, http=True))


# -- TLS: a real server, a real handshake -----------------------------------------------------


class Pki:
    """A CA made here, a server certificate for 127.0.0.1, and a client certificate."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = self._cert("test CA", self.ca_key, None, ca=True)
        self.ca = self._write_cert("ca.pem", self.ca_cert)
        self.server_cert, self.server_key = self.leaf("127.0.0.1", "server")
        self.client_cert, self.client_key = self.leaf("test client", "client")

    def leaf(self, name: str, stem: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._cert(name, key, self.ca_key, ca=False)
        key_path = self.folder / f"{stem}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return self._write_cert(f"{stem}.cert", cert), key_path

    def _write_cert(self, name: str, cert: x509.Certificate) -> Path:
        path = self.folder / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def _cert(
        self,
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer_key: ec.EllipticCurvePrivateKey | None,
        *,
        ca: bool,
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = self.ca_cert.subject if issuer_key else subject
        signer = issuer_key or key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
            )
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())


class TlsServer:
    """Answers each connection with the common name of the client's certificate (or "-")."""

    def __init__(self, pki: Pki, require_client_cert: bool) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(pki.ca)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    name = dict(x[0] for x in peer["subject"])["commonName"] if peer else "-"
                    tls.sendall(name.encode())
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: Pki) -> Iterator[TlsServer]:
    running = TlsServer(pki, require_client_cert=False)
    yield running
    running.close()


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[TlsServer]:
    running = TlsServer(pki, require_client_cert=True)
    yield running
    running.close()


def _talk(server: TlsServer, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.recv(100).decode()


def test_the_system_cas_alone_refuse_a_test_ca(server: TlsServer, tmp_path: Path) -> None:
    context, sources = ssl_context(server.host, HostSettings(server.host), certs_d=tmp_path)
    assert sources == ("the system CAs",)
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(server, context)


def test_certs_d_ca_is_trusted(server: TlsServer, pki: Pki, tmp_path: Path) -> None:
    folder = tmp_path / server.host
    folder.mkdir()
    (folder / "ca.crt").write_bytes(pki.ca.read_bytes())
    (tmp_path / "127.0.0.1:1").mkdir()  # another port's folder is not read
    context, sources = ssl_context(server.host, HostSettings(server.host), certs_d=tmp_path)
    assert _talk(server, context) == "-"
    assert sources == ("the system CAs", str(folder / "ca.crt"))


def test_any_crt_in_certs_d_is_a_ca(
    server: TlsServer, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / server.host
    folder.mkdir()
    (folder / "other.crt").write_bytes(pki.ca.read_bytes())
    monkeypatch.setenv("BUILDER_CERTS_D", str(tmp_path))  # the root, moved for tests
    context, sources = ssl_context(server.host, HostSettings(server.host))
    assert _talk(server, context) == "-"
    assert sources[1] == str(folder / "other.crt")


def test_config_ca_is_trusted(server: TlsServer, pki: Pki, tmp_path: Path) -> None:
    config = _write(tmp_path, f'[registry."{server.host}"]\nca = ["{pki.ca}"]\n')
    settings = load_settings(config).for_host(server.host)
    context, sources = ssl_context(server.host, settings, certs_d=tmp_path / "none")
    assert _talk(server, context) == "-"
    assert sources == ("the system CAs", f"ca = {pki.ca} in {config}")


def test_insecure_skips_verification(server: TlsServer, tmp_path: Path) -> None:
    settings = HostSettings(server.host, insecure=True)
    context, _ = ssl_context(server.host, settings, certs_d=tmp_path)
    assert _talk(server, context) == "-"


def test_certs_d_client_certificate(mtls_server: TlsServer, pki: Pki, tmp_path: Path) -> None:
    folder = tmp_path / mtls_server.host
    folder.mkdir()
    (folder / "ca.crt").write_bytes(pki.ca.read_bytes())
    without, _ = ssl_context(mtls_server.host, HostSettings(mtls_server.host), certs_d=tmp_path)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        assert _talk(mtls_server, without) == ""  # TLS 1.3: the refusal comes at the read
    (folder / "client.cert").write_bytes(pki.client_cert.read_bytes())
    (folder / "client.key").write_bytes(pki.client_key.read_bytes())
    context, _ = ssl_context(mtls_server.host, HostSettings(mtls_server.host), certs_d=tmp_path)
    assert _talk(mtls_server, context) == "test client"


def test_config_keypair(mtls_server: TlsServer, pki: Pki, tmp_path: Path) -> None:
    settings = HostSettings(
        mtls_server.host, ca=(pki.ca,), keypairs=((pki.client_cert, pki.client_key),)
    )
    context, _ = ssl_context(mtls_server.host, settings, certs_d=tmp_path)
    assert _talk(mtls_server, context) == "test client"


@pytest.mark.parametrize(("present", "missing"), [("c.cert", "c.key"), ("c.key", "c.cert")])
def test_a_half_client_pair_in_certs_d_is_an_error(
    tmp_path: Path, present: str, missing: str
) -> None:
    (tmp_path / "h.example").mkdir()
    (tmp_path / "h.example" / present).write_text("x")
    with pytest.raises(UsageError, match=missing):
        ssl_context("h.example", HostSettings("h.example"), certs_d=tmp_path)


def test_a_bad_ca_file_names_its_source(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    config = tmp_path / "builder.toml"
    settings = HostSettings("h.example", ca=(tmp_path / "bad.pem",), source=config)
    with pytest.raises(UsageError, match=rf"cannot load CA ca = .*bad\.pem in {config}"):
        ssl_context("h.example", settings, certs_d=tmp_path)
    settings = HostSettings("h.example", ca=(tmp_path / "absent.pem",), source=config)
    with pytest.raises(UsageError, match=r"absent\.pem.*No such file"):
        ssl_context("h.example", settings, certs_d=tmp_path)


def test_docker_hub_certs_d_folder(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "docker.io").mkdir()
    (tmp_path / "docker.io" / "ca.crt").write_bytes(pki.ca.read_bytes())
    _, sources = ssl_context("registry-1.docker.io", HostSettings("docker.io"), certs_d=tmp_path)
    assert sources == ("the system CAs", str(tmp_path / "docker.io/ca.crt"))


def test_trust_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "builder.toml"
    hint = trust_hint("r.example:5000", HostSettings("r.example:5000", source=config), tmp_path)
    assert hint == (
        f"To trust its CA, put it in {tmp_path}/r.example:5000/ca.crt, or add"
        f' `ca = ["/path/ca.pem"]` under [registry."r.example:5000"] in {config}'
    )
    # Without a config file, the hint names the file that would be read.
    monkeypatch.setenv("BUILDER_CONFIG", str(tmp_path / "named.toml"))
    assert trust_hint("h", HostSettings("h"), tmp_path).endswith(f"in {tmp_path}/named.toml")
