"""Real docker-registry processes (Debian's `docker-registry`, distribution 2.8) in the three
setups the tests use, and what a test needs to reach each one.

- plain: HTTP, no auth (what docker allows without configuration on 127.0.0.0/8);
- TLS with htpasswd basic auth, the server certificate signed by a CA made in the session;
- token auth over HTTP, with our own token issuer (tests/registry/token_issuer.py) as its realm.

Each process gets a free loopback port, its own storage and config under a temp dir, and its
log in `registry.log` there (read it when a test fails for a reason the client does not say).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tests.registry import skopeo
from tests.registry.certs import KeyPair
from tests.registry.serving import LOOPBACK, free_port
from tests.registry.token_issuer import TokenIssuer

_START_ATTEMPTS = 3  # another process may take the free port before the registry binds it
_START_SECONDS = 10.0


@dataclass
class RegistryProcess:
    address: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _quoted(text: str | Path) -> str:
    return json.dumps(str(text))  # a JSON string is a YAML double-quoted scalar


def start_registry(directory: Path, *, http_extra: str = "", auth: str = "") -> RegistryProcess:
    """docker-registry serving `directory`/data on a free 127.0.0.1 port, up and answering.

    `http_extra` is YAML added inside the `http:` section (indented two spaces: `tls:`), and
    `auth` the top-level `auth:` section.
    """
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    assert os.path.exists(binary), "docker-registry is not installed (make test installs it)"
    failures = []
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {_quoted(directory / 'data')}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {LOOPBACK}:{port}\n{http_extra}"
            f"{auth}"
        )
        log = directory / "registry.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=sink, stderr=sink, stdin=subprocess.DEVNULL
            )
        running = RegistryProcess(f"{LOOPBACK}:{port}", directory, process)
        if _wait_for_port(port, process):
            return running
        running.stop()
        failures.append(log.read_text(errors="replace")[-2000:])
    raise AssertionError(f"docker-registry did not start:\n{failures[-1]}")


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def write_docker_config(directory: Path, auths: dict[str, tuple[str, str]]) -> Path:
    """A DOCKER_CONFIG dir: `directory`/config.json with `auths` {address: (user, password)}."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = {
        address: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        for address, (user, password) in auths.items()
    }
    (directory / "config.json").write_text(json.dumps({"auths": entries}, indent=2))
    return directory


@dataclass(frozen=True)
class TlsRegistry:
    """The registry behind TLS and htpasswd basic auth.

    `ca` is the test CA's PEM; `certs_d` is a dir in docker's /etc/docker/certs.d layout,
    holding `certs_d/<address>/ca.crt`.
    """

    address: str  # "127.0.0.1:PORT"
    ca: Path
    certs_d: Path
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def cert_dir(self) -> Path:
        """`certs_d/<address>`: what skopeo's --cert-dir and docker's certs.d look up."""
        return self.certs_d / self.address

    def docker_config(self, directory: Path, *, password: str | None = None) -> Path:
        """A DOCKER_CONFIG dir with the credentials (or `password` instead, to test a bad one)."""
        return write_docker_config(
            directory, {self.address: (self.username, password or self.password)}
        )

    def builder_config(self, path: Path) -> Path:
        """A builder.toml (for $BUILDER_CONFIG) that trusts the test CA for this registry."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'[registry."{self.address}"]\nca = [{_quoted(self.ca)}]\n')
        return path

    def access(self, *, password: str | None = None, anonymous: bool = False) -> skopeo.Access:
        """How skopeo reaches it: the CA, and the credentials unless `anonymous`."""
        creds = None if anonymous else f"{self.username}:{password or self.password}"
        return skopeo.Access(tls_verify=True, cert_dir=self.cert_dir, creds=creds)


def start_tls_registry(
    directory: Path, ca: KeyPair, server: KeyPair, username: str, password: str
) -> tuple[RegistryProcess, TlsRegistry]:
    htpasswd = directory / "htpasswd"
    # distribution reads only bcrypt entries; Python's $2b$ is one Go's bcrypt accepts.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{username}:{hashed}\n")
    tls = (
        f"  tls:\n    certificate: {_quoted(server.cert_path)}\n"
        f"    key: {_quoted(server.key_path)}\n"
    )
    auth = f"auth:\n  htpasswd:\n    realm: builder-test\n    path: {_quoted(htpasswd)}\n"
    process = start_registry(directory, http_extra=tls, auth=auth)
    certs_d = directory / "certs.d"
    (certs_d / process.address).mkdir(parents=True)
    shutil.copyfile(ca.cert_path, certs_d / process.address / "ca.crt")
    return process, TlsRegistry(process.address, ca.cert_path, certs_d, username, password)


@dataclass(frozen=True)
class TokenRegistry:
    """The registry with token auth; `issuer` is the token issuer it trusts (reset per test)."""

    address: str  # "127.0.0.1:PORT", plain HTTP
    issuer: TokenIssuer
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def docker_config(self, directory: Path, *, password: str | None = None) -> Path:
        """A DOCKER_CONFIG dir with the credentials (or `password` instead, to test a bad one)."""
        return write_docker_config(
            directory, {self.address: (self.username, password or self.password)}
        )

    def access(self, *, password: str | None = None, anonymous: bool = False) -> skopeo.Access:
        creds = None if anonymous else f"{self.username}:{password or self.password}"
        return skopeo.Access(tls_verify=False, creds=creds)


def start_token_registry(
    directory: Path, issuer: TokenIssuer, username: str, password: str
) -> tuple[RegistryProcess, TokenRegistry]:
    auth = (
        "auth:\n  token:\n"
        f"    realm: {_quoted(issuer.realm)}\n"
        f"    service: {_quoted(issuer.service)}\n"
        f"    issuer: {_quoted(issuer.name)}\n"
        f"    rootcertbundle: {_quoted(issuer.signing.cert_path)}\n"
    )
    process = start_registry(directory, auth=auth)
    return process, TokenRegistry(process.address, issuer, username, password)
