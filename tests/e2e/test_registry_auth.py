"""The registry client through the real CLI against the real registries of the test session:
TLS with basic auth, token auth, faults from a proxy in front of the plain registry, a
mirror for Docker Hub names, skopeo round trips over TLS, an index without our platform.

Every CLI run gets its own DOCKER_CONFIG, BUILDER_CONFIG and BUILDER_CERTS_D (`Home`), so
nothing of the machine's own configuration (as root: /etc/builder/builder.toml,
/etc/docker/certs.d, ~/.docker/config.json) takes part.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from builder import errors
from tests.e2e.support import Builder, Result, make_context
from tests.registry import skopeo
from tests.registry.certs import make_ca
from tests.registry.fault_proxy import FaultProxy
from tests.registry.images import OciImage, host_platform, write_oci_layout
from tests.registry.registries import TlsRegistry, TokenRegistry

EXIT = errors.RegistryError.exit_code  # 9


@dataclass(frozen=True)
class Home:
    """Where the CLI finds its configuration in one test: a docker config dir (no
    config.json yet), a builder.toml (empty unless a test writes it), a certs.d (empty)."""

    docker: Path
    config: Path
    certs_d: Path

    @property
    def docker_json(self) -> Path:
        return self.docker / "config.json"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DOCKER_CONFIG": str(self.docker),
            "BUILDER_CONFIG": str(self.config),
            "BUILDER_CERTS_D": str(self.certs_d),
            **extra,
        }


@pytest.fixture
def home(tmp_path: Path) -> Home:
    found = Home(tmp_path / "docker", tmp_path / "builder.toml", tmp_path / "certs.d")
    found.docker.mkdir()
    found.certs_d.mkdir()
    found.config.write_text("")
    return found


@pytest.fixture
def fresh(tmp_path: Path) -> Builder:
    """A store with nothing in it (created by the first command)."""
    return Builder(tmp_path / "fresh")


def login(builder: Builder, home: Home, host: str, user: str, password: str) -> Result:
    """`builder login -u USER --password-stdin HOST`, the password on stdin."""
    verb = ["login", "-u", user, "--password-stdin", host]
    proc = subprocess.run(
        [sys.executable, "-m", "builder", "--root", builder.root, *verb],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **home.env()},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def one_error(result: Result, status: int, *words: str) -> None:
    """The run failed with `status` and said so in exactly one `error:` line with `words`."""
    assert result.status == status, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def snapshot(root: Path) -> tuple[bytes, list[str], list[str]]:
    """What a failed pull must leave as it was: index.json, the blobs, tmp/."""
    blobs = sorted(p.name for p in (root / "layout" / "blobs" / "sha256").iterdir())
    return (root / "layout" / "index.json").read_bytes(), blobs, sorted(os.listdir(root / "tmp"))


def digest_of(builder: Builder, name: str) -> str:
    info: dict[str, Any] = json.loads(builder("inspect", name).stdout)[0]
    return str(info["Digest"])


def unique_image(tmp_path: Path, repository: str, **kwargs: Any) -> OciImage:
    """A small OCI layout whose layer no other test has (its bytes name the repository)."""
    files = {"id.txt": f"{repository} {time.time_ns()}\n".encode()}
    return write_oci_layout(tmp_path / "oci", files, **kwargs)


# -- TLS and basic auth ------------------------------------------------------------------


def test_login_push_pull_run_and_logout_over_tls(
    builder: Builder, fresh: Builder, tls_registry: TlsRegistry, home: Home, repository: str
) -> None:
    reg = tls_registry
    trust_in_certs_d(reg, home)  # trust through docker's certs.d layout
    done = login(builder, home, reg.address, reg.username, reg.password)
    assert done.status == 0, done.stderr
    assert "Login Succeeded" in done.stdout
    entry = json.loads(home.docker_json.read_text())["auths"][reg.address]
    assert base64.b64decode(entry["auth"]).decode() == f"{reg.username}:{reg.password}"
    assert home.docker_json.stat().st_mode & 0o777 == 0o600

    ref = f"{reg.address}/{repository}:1"
    pushed = builder("push", "-q", "busybox:latest", ref, env=home.env()).stdout.strip()
    assert pushed == digest_of(builder, "busybox:latest")
    assert skopeo.inspect(f"docker://{ref}", reg.access())["Digest"] == pushed

    assert fresh("pull", "-q", ref, env=home.env()).stdout.strip() == pushed
    ran = fresh("run", "--rm", ref, "echo", "pulled over TLS", env=home.env())
    assert ran.stdout == "pulled over TLS\n"

    out = builder("logout", reg.address, env=home.env())
    assert out.stdout == f"Removed the credentials for {reg.address}\n"
    assert reg.address not in json.loads(home.docker_json.read_text()).get("auths", {})
    anonymous = Builder(fresh.root.parent / "again")("pull", "-q", ref, env=home.env(), check=False)
    one_error(anonymous, EXIT, "requires authentication", f"builder login {reg.address}")


def trust_in_certs_d(reg: TlsRegistry, home: Home, ca: Path | None = None) -> None:
    """Put a CA (the registry's own, by default) in certs.d/ADDRESS/ca.crt, as docker has it."""
    folder = home.certs_d / reg.address
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes((ca or reg.ca).read_bytes())


def test_a_wrong_password_is_one_error_and_writes_nothing(
    builder: Builder, tls_registry: TlsRegistry, home: Home
) -> None:
    reg = tls_registry
    reg.builder_config(home.config)  # trust through `ca` in builder.toml this time
    failed = login(builder, home, reg.address, reg.username, "not the password")
    one_error(failed, EXIT, f"refused the credentials of user {reg.username!r}")
    assert os.listdir(home.docker) == []  # no config.json, no temp file either
    # Logged in already: a failed login again keeps the file as it was, byte for byte.
    reg.docker_config(home.docker)
    before = home.docker_json.read_bytes()
    again = login(builder, home, reg.address, reg.username, "not the password")
    one_error(again, EXIT, "refused the credentials")
    assert home.docker_json.read_bytes() == before
    assert os.listdir(home.docker) == ["config.json"]


def test_push_with_a_wrong_password_in_config_json_is_one_error(
    builder: Builder, tls_registry: TlsRegistry, home: Home, repository: str
) -> None:
    reg = tls_registry
    reg.builder_config(home.config)
    reg.docker_config(home.docker, password="not the password")
    failed = builder(
        "push", "-q", "busybox", f"{reg.address}/{repository}:1", env=home.env(), check=False
    )
    one_error(failed, EXIT, "refused the credentials", "builder login")


def test_an_untrusted_ca_names_the_cas_tried_and_how_to_trust_one(
    builder: Builder, tls_registry: TlsRegistry, home: Home, tmp_path: Path
) -> None:
    reg = tls_registry
    failed = login(builder, home, reg.address, reg.username, reg.password)
    one_error(
        failed,
        EXIT,
        f"TLS verification of registry {reg.address} failed",
        "CAs tried: the system CAs.",
        f"put it in {home.certs_d / reg.address / 'ca.crt'}, or add",
        f'[registry."{reg.address}"] in {home.config}',
    )
    assert not home.docker_json.exists()
    # A CA that did not sign the registry's certificate: the message names where it was.
    (tmp_path / "other-ca").mkdir()
    other = make_ca(tmp_path / "other-ca")
    trust_in_certs_d(reg, home, other.cert_path)
    home.config.write_text(f'[registry."{reg.address}"]\nca = ["{other.cert_path}"]\n')
    pulled = builder("pull", "-q", f"{reg.address}/any:1", env=home.env(), check=False)
    one_error(
        pulled,
        EXIT,
        f"CAs tried: the system CAs, {home.certs_d / reg.address / 'ca.crt'},"
        f" ca = {other.cert_path} in {home.config}. ",
    )


def test_insecure_in_the_config_needs_no_ca(
    builder: Builder, tls_registry: TlsRegistry, home: Home, repository: str
) -> None:
    reg = tls_registry
    home.config.write_text(f'[registry."{reg.address}"]\ninsecure = true\n')
    reg.docker_config(home.docker)
    ref = f"{reg.address}/{repository}:1"
    pushed = builder("push", "-q", "busybox", ref, env=home.env())
    assert pushed.stderr == ""  # the config asked for it: no InsecureRequestWarning
    assert skopeo.inspect(f"docker://{ref}", reg.access())["Digest"] == pushed.stdout.strip()


def test_skopeo_round_trips_over_tls(
    builder: Builder,
    fresh: Builder,
    busybox_store: Path,
    tls_registry: TlsRegistry,
    home: Home,
    repository: str,
) -> None:
    """What skopeo pushes we pull and run; what we push skopeo copies back (digests agree)."""
    reg = tls_registry
    reg.builder_config(home.config)
    reg.docker_config(home.docker)
    theirs = f"{reg.address}/{repository}/theirs:1"
    skopeo.copy(
        f"oci:{busybox_store}/layout:busybox:latest",
        f"docker://{theirs}",
        dst=reg.access(),
        format="v2s2",
    )
    expected = skopeo.inspect(f"docker://{theirs}", reg.access())["Digest"]
    assert fresh("pull", "-q", theirs, env=home.env()).stdout.strip() == expected
    assert fresh("run", "--rm", theirs, "echo", "ok", env=home.env()).stdout == "ok\n"

    ours = f"{reg.address}/{repository}/ours:1"
    pushed = builder("push", "-q", "busybox:latest", ours, env=home.env()).stdout.strip()
    assert skopeo.inspect(f"docker://{ours}", reg.access())["Digest"] == pushed
    copied = fresh.root.parent / "copied"
    skopeo.copy(f"docker://{ours}", f"oci:{copied}:x", src=reg.access())
    index = json.loads((copied / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed  # skopeo took it unchanged


# -- token auth --------------------------------------------------------------------------


@pytest.fixture
def layered(builder: Builder, tmp_path: Path, repository: str) -> str:
    """An image of four layers (busybox's and three RUNs) no registry has seen."""
    steps = "".join(f"RUN echo {repository} {n} > /layer{n}\n" for n in range(3))
    builder("build", "-q", "-t", "layered", make_context(tmp_path, f"FROM busybox\n{steps}"))
    return "layered"


def test_token_auth_push_with_credentials_then_pull_anonymously(
    builder: Builder,
    fresh: Builder,
    layered: str,
    token_registry: TokenRegistry,
    home: Home,
    tmp_path: Path,
    repository: str,
) -> None:
    reg, issuer = token_registry, token_registry.issuer
    reg.docker_config(home.docker)
    ref = f"{reg.address}/{repository}:1"
    pushed = builder("push", "-q", layered, ref, env=home.env()).stdout.strip()
    # Five blobs (config and four layers, three at once), each a HEAD and an upload, then
    # the manifest: a dozen requests or more, one token (the registry asks for it per scope).
    assert issuer.count() == issuer.count(f"repository:{repository}:pull,push") == 1
    assert issuer.requests[0].user == reg.username
    assert skopeo.inspect(f"docker://{ref}", reg.access())["Digest"] == pushed

    nobody = Home(tmp_path / "nobody", home.config, home.certs_d)
    nobody.docker.mkdir()
    before = issuer.count()
    assert fresh("pull", "-q", ref, env=nobody.env()).stdout.strip() == pushed
    assert [r.user for r in issuer.requests[before:]] == [None]  # one token, anonymous

    issuer.allow_anonymous_pull = False
    denied = Builder(tmp_path / "denied")("pull", "-q", ref, env=nobody.env(), check=False)
    one_error(denied, EXIT, f"registry {reg.address} requires authentication for pull of")


def test_token_auth_with_a_wrong_password_is_one_error(
    builder: Builder, token_registry: TokenRegistry, home: Home, repository: str
) -> None:
    reg = token_registry
    reg.docker_config(home.docker, password="not the password")
    ref = f"{reg.address}/{repository}:1"
    failed = builder("push", "-q", "busybox", ref, env=home.env(), check=False)
    one_error(failed, EXIT, f"refused the credentials of user {reg.username!r}")
    assert any(r.status == 401 for r in reg.issuer.requests)
    wrong = login(
        builder,
        Home(home.docker.parent / "empty", home.config, home.certs_d),
        reg.address,
        reg.username,
        "not the password",
    )
    one_error(wrong, EXIT, "refused the credentials")


# -- faults from a proxy in front of the plain registry ----------------------------------

QUICK = {"BUILDER_REGISTRY_TIMEOUT": "2"}  # a fault that persists ends in about 2 s


@dataclass(frozen=True)
class Served:
    """A small image in the plain registry, reached through the fault proxy."""

    image: OciImage
    name: str  # PROXY/REPOSITORY:1

    @property
    def layer(self) -> str:
        return f"/blobs/{self.image.layers[0].digest}"


@pytest.fixture
def served(registry: str, fault_proxy: FaultProxy, tmp_path: Path, repository: str) -> Served:
    image = unique_image(tmp_path, repository)
    skopeo.push(image.ref, registry, f"{repository}:1", skopeo.PLAIN)
    return Served(image, f"{fault_proxy.address}/{repository}:1")


def statuses(proxy: FaultProxy, path: str) -> list[int]:
    return [seen.status for seen in proxy.seen("GET", path)]


def test_5xx_on_a_manifest_and_a_blob_is_retried(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.fail("/manifests/", status=500, method="GET", times=2)
    fault_proxy.fail(served.layer, status=503, method="GET", times=2)
    pulled = builder("pull", "-q", served.name, env=home.env())
    assert pulled.stdout.strip() == served.image.digest
    assert statuses(fault_proxy, "/manifests/") == [500, 500, 200]
    assert statuses(fault_proxy, served.layer) == [503, 503, 200]


def test_429_waits_as_long_as_retry_after_says(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.fail(served.layer, status=429, method="GET", times=1, retry_after=3)
    started = time.monotonic()
    builder("pull", "-q", served.name, env=home.env())
    # Without Retry-After the first retry comes after about half a second.
    assert time.monotonic() - started >= 3.0
    assert statuses(fault_proxy, served.layer) == [429, 200]


def test_a_blob_cut_short_once_is_fetched_again(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.truncate(served.layer, after=served.image.layers[0].size // 2, times=1)
    assert builder("pull", "-q", served.name, env=home.env()).stdout.strip() == (
        served.image.digest
    )
    assert [s.fault for s in fault_proxy.seen("GET", served.layer)] == ["truncate", None]
    layer = served.image.layers[0].digest.removeprefix("sha256:")
    stored = builder.root / "layout" / "blobs" / "sha256" / layer
    assert stored.read_bytes() == served.image.layers[0].data


def test_a_blob_always_cut_short_is_refused_and_nothing_is_written(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.truncate(served.layer, after=10)
    before = snapshot(builder.root)
    failed = builder("pull", "-q", served.name, env=home.env(**QUICK), check=False)
    one_error(failed, EXIT, "broke off")
    assert len(fault_proxy.seen("GET", served.layer)) >= 2  # retried before giving up
    assert snapshot(builder.root) == before


def test_a_blob_whose_bytes_do_not_match_is_refused_and_nothing_is_written(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.corrupt(served.layer)
    before = snapshot(builder.root)
    failed = builder("pull", "-q", served.name, env=home.env(), check=False)
    one_error(failed, EXIT, served.image.layers[0].digest, "does not match its digest")
    assert len(fault_proxy.seen("GET", served.layer)) == 1  # refused at once, not retried
    assert snapshot(builder.root) == before


def test_401_everywhere_is_one_clear_error(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.unauthorized()
    before = snapshot(builder.root)
    anonymous = builder("pull", "-q", served.name, env=home.env(), check=False)
    one_error(anonymous, EXIT, "requires authentication", f"builder login {fault_proxy.address}")
    (home.docker / "config.json").write_text(
        json.dumps({"auths": {fault_proxy.address: {"auth": base64.b64encode(b"u:p").decode()}}})
    )
    refused = builder("pull", "-q", served.name, env=home.env(), check=False)
    one_error(refused, EXIT, "refused the credentials of user 'u'")
    assert snapshot(builder.root) == before


def test_a_registry_that_hangs_is_a_timeout(
    builder: Builder, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.hang("/manifests/", seconds=60)
    before = snapshot(builder.root)
    started = time.monotonic()
    failed = builder("pull", "-q", served.name, env=home.env(**QUICK), check=False, timeout=30)
    assert time.monotonic() - started < 10
    one_error(failed, EXIT, f"registry {fault_proxy.address} did not answer in time")
    assert snapshot(builder.root) == before


# -- a mirror for Docker Hub -------------------------------------------------------------


def test_from_busybox_builds_through_a_mirror(
    builder: Builder,
    fresh: Builder,
    registry: str,
    fault_proxy: FaultProxy,
    home: Home,
    tmp_path: Path,
) -> None:
    """docker.io is out of reach here: the build works only if the mirror serves it."""
    builder("push", "-q", "busybox:latest", f"{registry}/library/busybox:latest")
    home.config.write_text(f'[registry."docker.io"]\nmirrors = ["{fault_proxy.address}"]\n')
    context = make_context(tmp_path, "FROM busybox\nRUN echo mirrored > /m\n")
    fresh("build", "-q", "-t", "app", context, env=home.env())
    assert fresh("run", "--rm", "app", "cat", "/m").stdout == "mirrored\n"
    assert statuses(fault_proxy, "^/v2/library/busybox/manifests/latest$") == [200]
    assert digest_of(fresh, "busybox:latest") == digest_of(builder, "busybox:latest")


def test_a_mirror_without_the_image_falls_back_to_the_registry(
    builder: Builder, registry: str, fault_proxy: FaultProxy, served: Served, home: Home
) -> None:
    fault_proxy.fail("/manifests/", status=404, method="GET", times=None)
    home.config.write_text(f'[registry."{registry}"]\nmirrors = ["{fault_proxy.address}"]\n')
    direct = served.name.replace(fault_proxy.address, registry)
    assert builder("pull", "-q", direct, env=home.env()).stdout.strip() == served.image.digest
    assert statuses(fault_proxy, "/manifests/") == [404]  # the mirror was asked first


# -- an index without our platform -------------------------------------------------------


def test_an_index_without_our_platform_names_the_ones_it_has(
    builder: Builder, registry: str, tmp_path: Path, repository: str, home: Home
) -> None:
    others = [p for p in [("linux", "s390x"), ("linux", "ppc64le"), ("linux", "riscv64")]]
    others = [p for p in others if p != host_platform()][:2]
    image = unique_image(tmp_path, repository, platforms=others)
    skopeo.push(image.ref, registry, f"{repository}:1", skopeo.PLAIN, all_images=True)
    before = snapshot(builder.root)
    failed = builder("pull", "-q", f"{registry}/{repository}:1", env=home.env(), check=False)
    offered = ", ".join(sorted(f"{os_}/{arch}" for os_, arch in others))
    one_error(failed, EXIT, f"has no image for linux/{host_platform()[1]} (it has {offered})")
    assert snapshot(builder.root) == before


def test_5xx_during_a_push_is_retried(
    builder: Builder, layered: str, fault_proxy: FaultProxy, home: Home, repository: str
) -> None:
    """An upload's POST, its PUT with the bytes, and the manifest's PUT each meet a 500 once."""
    fault_proxy.fail("/blobs/uploads/$", status=500, method="POST", times=1)
    fault_proxy.fail("/blobs/uploads/.+digest=", status=502, method="PUT", times=1)
    fault_proxy.fail("/manifests/", status=503, method="PUT", times=1)
    ref = f"{fault_proxy.address}/{repository}:1"
    pushed = builder("push", "-q", layered, ref, env=home.env()).stdout.strip()
    assert pushed == digest_of(builder, layered)
    assert [s.status for s in fault_proxy.seen("PUT", "/manifests/")] == [503, 201]
    assert sorted(s.fault or "" for s in fault_proxy.seen() if s.status >= 500) == ["status"] * 3
    assert skopeo.inspect(f"docker://{ref}", skopeo.PLAIN)["Digest"] == pushed
