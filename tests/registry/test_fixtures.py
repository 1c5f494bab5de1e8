"""The registry fixtures work, proven with skopeo and urllib (never with our own client).

Each registry takes a push and answers an inspect with the digest that was pushed; the TLS one
only with its CA and the right password; the token one only with tokens its issuer signed.
The fault proxy does to a plain HTTP client exactly what each script says.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import ssl
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import Builder
from tests.registry import skopeo
from tests.registry.fault_proxy import FaultProxy
from tests.registry.images import (
    OCI_INDEX,
    OciImage,
    host_platform,
    save_builder_image,
    write_oci_layout,
)
from tests.registry.registries import TlsRegistry, TokenRegistry
from tests.registry.token_issuer import libtrust_key_id


def _image(tmp_path: Path, repository: str, **kwargs: Any) -> OciImage:
    """A small image whose layer no other test pushes (its content names the repository)."""
    return write_oci_layout(tmp_path / "layout", {"id.txt": repository.encode()}, **kwargs)


def _get(url: str, *, headers: dict[str, str] | None = None, timeout: float = 10) -> Any:
    return urllib.request.urlopen(
        urllib.request.Request(url, headers=headers or {}), timeout=timeout
    )


@dataclass(frozen=True)
class Refusal:
    code: int
    headers: Any
    body: bytes


def _refused(request: urllib.request.Request | str, **kwargs: Any) -> Refusal:
    """The HTTP error that urlopen raises for `request`, its body read and its socket closed."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, **kwargs)
    error = caught.value
    with error:
        return Refusal(error.code, error.headers, error.read())


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the plain registry -------------------------------------------------------------------


def test_plain_registry_round_trip(registry: str, repository: str, tmp_path: Path) -> None:
    image = _image(tmp_path, repository)
    ref = skopeo.push(image.ref, registry, f"{repository}:v1", skopeo.PLAIN)
    info = skopeo.inspect(ref, skopeo.PLAIN)
    assert info["Digest"] == image.digest
    assert info["Layers"] == [image.layers[0].digest]
    # and back out, byte for byte
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:v1", src=skopeo.PLAIN)
    layer = image.layers[0].digest.removeprefix("sha256:")
    assert (tmp_path / "back" / "blobs" / "sha256" / layer).read_bytes() == image.layers[0].data


def test_multi_platform_index(registry: str, repository: str, tmp_path: Path) -> None:
    platforms = [host_platform(), ("linux", "s390x" if host_platform()[1] != "s390x" else "arm64")]
    image = _image(tmp_path, repository, platforms=platforms)
    ref = skopeo.push(image.ref, registry, f"{repository}:multi", skopeo.PLAIN, all_images=True)
    index = skopeo.inspect(ref, skopeo.PLAIN, raw=True)
    assert index["mediaType"] == OCI_INDEX
    listed = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert listed == set(platforms)
    assert skopeo.inspect(ref, skopeo.PLAIN)["Digest"] == image.digest
    mine = f"docker://{registry}/{repository}@{image.manifests[host_platform()]}"
    assert skopeo.inspect(mine, skopeo.PLAIN, config=True)["architecture"] == host_platform()[1]


def test_builder_saved_image_through_skopeo(registry: str, repository: str, tmp_path: Path) -> None:
    """An image from our own store (import + save, no registry code) goes in with skopeo."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "id").write_text(repository)
    builder = Builder(tmp_path / "store")
    builder("import", rootfs, "tiny:1")
    source = save_builder_image(builder, "tiny:1", tmp_path / "tiny.tar")
    ref = skopeo.push(source, registry, f"{repository}:v1", skopeo.PLAIN)
    ours = json.loads(builder("inspect", "tiny:1").stdout)[0]["Digest"]
    assert skopeo.inspect(ref, skopeo.PLAIN)["Digest"] == ours


# -- TLS + htpasswd ---------------------------------------------------------------------


def test_tls_registry_with_ca_and_credentials(
    tls_registry: TlsRegistry, repository: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, repository)
    ref = skopeo.push(image.ref, tls_registry.address, f"{repository}:v1", tls_registry.access())
    assert skopeo.inspect(ref, tls_registry.access())["Digest"] == image.digest
    assert (tls_registry.cert_dir / "ca.crt").read_bytes() == tls_registry.ca.read_bytes()
    config = tomllib.loads(tls_registry.builder_config(tmp_path / "builder.toml").read_text())
    assert config == {"registry": {tls_registry.address: {"ca": [str(tls_registry.ca)]}}}


def test_tls_registry_verifies_for_python_ssl(tls_registry: TlsRegistry) -> None:
    """The server certificate satisfies Python's own verifier (with X509 strict checks)."""
    context = ssl.create_default_context(cafile=str(tls_registry.ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    auth = {"Authorization": _basic(tls_registry.username, tls_registry.password)}
    request = urllib.request.Request(f"{tls_registry.url}/v2/", headers=auth)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200
    refused = _refused(f"{tls_registry.url}/v2/", context=context, timeout=10)  # no credentials
    assert refused.code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")


def test_tls_registry_refuses_a_wrong_password(
    tls_registry: TlsRegistry, repository: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, repository)
    dest = f"docker://{tls_registry.address}/{repository}:v1"
    result = skopeo.copy(image.ref, dest, dst=tls_registry.access(password="wrong"), check=False)
    assert result.status != 0
    assert "unauthorized" in result.stderr.lower() or "authentication" in result.stderr.lower()


def test_tls_registry_is_untrusted_without_the_ca(tls_registry: TlsRegistry) -> None:
    without_ca = skopeo.Access(tls_verify=True, creds=tls_registry.access().creds)
    ref = f"docker://{tls_registry.address}/nothing:here"
    result = skopeo.run("inspect", *without_ca.flags(), ref, check=False)
    assert result.status != 0
    assert "certificate" in result.stderr


def test_tls_registry_docker_config(
    tls_registry: TlsRegistry, repository: str, tmp_path: Path
) -> None:
    """The DOCKER_CONFIG dir's config.json is docker's format: skopeo logs in with it."""
    image = _image(tmp_path, repository)
    good = tls_registry.docker_config(tmp_path / "good")
    bad = tls_registry.docker_config(tmp_path / "bad", password="wrong")
    dest = f"docker://{tls_registry.address}/{repository}:v1"
    tls = ["--dest-tls-verify=true", f"--dest-cert-dir={tls_registry.cert_dir}"]
    failed = skopeo.run(
        "copy", "-q", *tls, "--dest-authfile", bad / "config.json", image.ref, dest, check=False
    )
    assert failed.status != 0
    skopeo.run("copy", "-q", *tls, "--dest-authfile", good / "config.json", image.ref, dest)
    assert skopeo.inspect(dest, tls_registry.access())["Digest"] == image.digest


# -- token auth -------------------------------------------------------------------------


def test_token_registry_with_credentials(
    token_registry: TokenRegistry, repository: str, tmp_path: Path
) -> None:
    issuer = token_registry.issuer
    image = _image(tmp_path, repository)
    ref = skopeo.push(
        image.ref, token_registry.address, f"{repository}:v1", token_registry.access()
    )
    assert skopeo.inspect(ref, token_registry.access())["Digest"] == image.digest
    push_scope = f"repository:{repository}:pull,push"
    assert issuer.count(push_scope) >= 1
    assert all(r.user == token_registry.username and r.status == 200 for r in issuer.requests)
    header, claims = issuer.verify(issuer.issued[0])
    assert header == {"typ": "JWT", "alg": "ES256", "kid": issuer.key_id}
    assert claims["iss"] == issuer.name and claims["aud"] == issuer.service
    assert claims["sub"] == token_registry.username
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    pushed = [issuer.verify(t)[1]["access"] for t in issuer.issued]
    assert [{"type": "repository", "name": repository, "actions": ["pull", "push"]}] in pushed


def test_libtrust_key_id_form(token_registry: TokenRegistry) -> None:
    key_id = libtrust_key_id(token_registry.issuer.signing.key.public_key())
    groups = key_id.split(":")
    # base32's alphabet: a group may be all digits ("2347"), which str.isupper calls False
    # (a random key made this test fail about once in 70 runs).
    base32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert len(groups) == 12 and all(len(g) == 4 and set(g) <= base32 for g in groups)


def _challenge(response_headers: Any) -> dict[str, str]:
    scheme, _, params = response_headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    return {k: v.strip('"') for k, _, v in (p.partition("=") for p in params.split('",'))}


def test_token_flow_by_hand(token_registry: TokenRegistry, repository: str, tmp_path: Path) -> None:
    """The challenge names the issuer; its token opens the registry; a forged one does not."""
    issuer = token_registry.issuer
    image = _image(tmp_path, repository)
    skopeo.push(image.ref, token_registry.address, f"{repository}:v1", token_registry.access())
    manifest_url = f"{token_registry.url}/v2/{repository}/manifests/v1"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    unauthorized = _refused(urllib.request.Request(manifest_url, headers=accept), timeout=10)
    assert unauthorized.code == 401
    challenge = _challenge(unauthorized.headers)
    assert challenge["realm"] == issuer.realm and challenge["service"] == issuer.service
    assert challenge["scope"] == f"repository:{repository}:pull"
    query = urllib.parse.urlencode({"service": challenge["service"], "scope": challenge["scope"]})
    auth = {"Authorization": _basic(token_registry.username, token_registry.password)}
    before = issuer.count()
    with _get(f"{challenge['realm']}?{query}", headers=auth) as response:
        body = json.load(response)
    assert issuer.count() == before + 1
    assert body["token"] == body["access_token"] and body["expires_in"] > 0 and body["issued_at"]
    bearer = {**accept, "Authorization": f"Bearer {body['token']}"}
    with _get(manifest_url, headers=bearer) as response:
        assert response.headers["Docker-Content-Digest"] == image.digest
    # A token with a signature that is not the issuer's is refused: the registry checks it.
    head, claims, signature = body["token"].split(".")
    forged = f"{head}.{claims}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    headers = {**accept, "Authorization": f"Bearer {forged}"}
    assert _refused(urllib.request.Request(manifest_url, headers=headers), timeout=10).code == 401


def test_token_anonymous_pull_is_a_flag(
    token_registry: TokenRegistry, repository: str, tmp_path: Path
) -> None:
    issuer = token_registry.issuer
    image = _image(tmp_path, repository)
    ref = skopeo.push(
        image.ref, token_registry.address, f"{repository}:v1", token_registry.access()
    )
    anonymous = token_registry.access(anonymous=True)
    assert skopeo.inspect(ref, anonymous)["Digest"] == image.digest
    assert any(r.grant == "anonymous" and r.granted for r in issuer.requests)
    issuer.allow_anonymous_pull = False
    denied = skopeo.run("inspect", *anonymous.flags(), ref, check=False)
    assert denied.status != 0
    # nor may an anonymous client push while pull is allowed
    issuer.allow_anonymous_pull = True
    other = f"docker://{token_registry.address}/{repository}:v2"
    assert skopeo.copy(image.ref, other, dst=anonymous, check=False).status != 0


def test_token_issuer_refuses_a_wrong_password(
    token_registry: TokenRegistry, repository: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, repository)
    dest = f"docker://{token_registry.address}/{repository}:v1"
    wrong = token_registry.access(password="wrong")
    assert skopeo.copy(image.ref, dest, dst=wrong, check=False).status != 0
    assert token_registry.issuer.requests
    assert all(r.status == 401 for r in token_registry.issuer.requests)


def test_token_oauth2_password_and_refresh_grants(
    token_registry: TokenRegistry, repository: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, repository)
    skopeo.push(image.ref, token_registry.address, f"{repository}:v1", token_registry.access())
    issuer = token_registry.issuer
    scope = f"repository:{repository}:pull"

    def request(form: dict[str, str]) -> urllib.request.Request:
        data = urllib.parse.urlencode({"service": issuer.service, "scope": scope, **form})
        return urllib.request.Request(issuer.realm, data=data.encode())

    def post(form: dict[str, str]) -> Any:
        with urllib.request.urlopen(request(form), timeout=10) as response:
            return json.load(response)

    first = post(
        {"grant_type": "password", "username": token_registry.username,
         "password": token_registry.password, "client_id": "tests"}
    )  # fmt: skip
    second = post({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    for body in (first, second):
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        with _get(f"{token_registry.url}/v2/{repository}/tags/list", headers=headers) as response:
            assert json.load(response)["tags"] == ["v1"]
    bad = _refused(request({"grant_type": "refresh_token", "refresh_token": "not-issued"}))
    assert bad.code == 400
    assert [r.grant for r in issuer.requests[-3:]] == ["password", "refresh_token", "refresh_token"]


# -- the fault proxy --------------------------------------------------------------------


@pytest.fixture
def blob(registry: str, repository: str, tmp_path: Path) -> tuple[str, bytes, str]:
    """A blob of 64 KiB in the plain registry: (its path under /v2/, its bytes, its digest)."""
    image = write_oci_layout(tmp_path / "layout", {"random.bin": os.urandom(64 * 1024)})
    skopeo.push(image.ref, registry, f"{repository}:v1", skopeo.PLAIN)
    layer = image.layers[0]
    return f"/v2/{repository}/blobs/{layer.digest}", layer.data, layer.digest


def test_proxy_passes_a_skopeo_push_and_pull(
    fault_proxy: FaultProxy, repository: str, tmp_path: Path
) -> None:
    image = _image(tmp_path, repository)
    ref = skopeo.push(image.ref, fault_proxy.address, f"{repository}:v1", skopeo.PLAIN)
    assert skopeo.inspect(ref, skopeo.PLAIN)["Digest"] == image.digest
    methods = {s.method for s in fault_proxy.requests}
    assert {"POST", "PUT", "HEAD", "GET"} <= methods
    assert all(s.fault is None and s.status < 500 for s in fault_proxy.requests)


def test_proxy_passes_a_chunked_upload(fault_proxy: FaultProxy, repository: str) -> None:
    """A blob uploaded in a chunked PATCH (as a streaming client sends it) arrives whole."""
    data = os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    connection = http.client.HTTPConnection(fault_proxy.address, timeout=10)
    try:
        connection.request("POST", f"/v2/{repository}/blobs/uploads/", body=b"")
        started = connection.getresponse()
        started.read()
        assert started.status == 202
        location = urllib.parse.urlsplit(started.headers["Location"])
        assert location.netloc == fault_proxy.address  # the registry sends the client back to us
        pieces = (data[i : i + 30_000] for i in range(0, len(data), 30_000))
        connection.request("PATCH", f"{location.path}?{location.query}", body=pieces,
                           headers={"Content-Type": "application/octet-stream"},
                           encode_chunked=True)  # fmt: skip
        patched = connection.getresponse()
        patched.read()
        assert patched.status == 202
        done = urllib.parse.urlsplit(patched.headers["Location"])
        query = f"{done.query}&digest={digest}"
        connection.request("PUT", f"{done.path}?{query}", body=b"")
        put = connection.getresponse()
        put.read()
        assert put.status == 201
    finally:
        connection.close()
    with _get(f"http://{fault_proxy.address}/v2/{repository}/blobs/{digest}") as response:
        assert response.read() == data
    assert [s.method for s in fault_proxy.requests] == ["POST", "PATCH", "PUT", "GET"]


def test_proxy_fails_then_passes(fault_proxy: FaultProxy, blob: tuple[str, bytes, str]) -> None:
    path, data, _ = blob
    rule = fault_proxy.fail(r"/blobs/", method="GET", times=2)
    url = f"http://{fault_proxy.address}{path}"
    for _ in range(2):
        assert _refused(url, timeout=10).code == 500
    with _get(url) as response:
        assert response.read() == data
    assert rule.used == 2
    assert [(s.status, s.fault) for s in fault_proxy.seen("GET", "/blobs/")] == [
        (500, "status"), (500, "status"), (200, None)
    ]  # fmt: skip


def test_proxy_429_with_retry_after(fault_proxy: FaultProxy, blob: tuple[str, bytes, str]) -> None:
    path, _, _ = blob
    fault_proxy.fail(r"/blobs/", status=429, retry_after=2)
    limited = _refused(f"http://{fault_proxy.address}{path}", timeout=10)
    assert limited.code == 429
    assert limited.headers["Retry-After"] == "2"
    assert json.loads(limited.body)["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_proxy_truncates_a_blob(fault_proxy: FaultProxy, blob: tuple[str, bytes, str]) -> None:
    path, data, _ = blob
    assert len(data) > 60_000  # the gzip of random bytes is no smaller than they are
    fault_proxy.truncate(r"/blobs/", after=1000)
    with _get(f"http://{fault_proxy.address}{path}") as response:
        assert int(response.headers["Content-Length"]) == len(data)
        with pytest.raises(http.client.IncompleteRead) as short:
            response.read()
    assert short.value.partial == data[:1000]


def test_proxy_corrupts_a_blob(fault_proxy: FaultProxy, blob: tuple[str, bytes, str]) -> None:
    path, data, digest = blob
    fault_proxy.corrupt(r"/blobs/", times=1)
    with _get(f"http://{fault_proxy.address}{path}") as response:
        body = response.read()
        assert response.headers["Docker-Content-Digest"] == digest
    assert len(body) == len(data) and body != data
    assert "sha256:" + hashlib.sha256(body).hexdigest() != digest
    with _get(f"http://{fault_proxy.address}{path}") as response:  # once only
        assert response.read() == data


def test_proxy_answers_401(fault_proxy: FaultProxy, repository: str, tmp_path: Path) -> None:
    fault_proxy.unauthorized()
    request = urllib.request.Request(
        f"http://{fault_proxy.address}/v2/", headers={"Authorization": _basic("a", "b")}
    )
    refused = _refused(request, timeout=10)
    assert refused.code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="fault-proxy"'
    image = _image(tmp_path, repository)
    creds = skopeo.Access(tls_verify=False, creds="someone:wrong")
    dest = f"docker://{fault_proxy.address}/{repository}:v1"
    assert skopeo.copy(image.ref, dest, dst=creds, check=False).status != 0
    assert fault_proxy.requests and all(s.status == 401 for s in fault_proxy.requests)


def test_proxy_hangs_past_a_timeout(fault_proxy: FaultProxy) -> None:
    fault_proxy.hang(r"^/v2/$", seconds=1.5, times=1)
    start = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        _get(f"http://{fault_proxy.address}/v2/", timeout=0.3)
    assert time.monotonic() - start < 1.2
    with _get(f"http://{fault_proxy.address}/v2/") as response:  # once only
        assert response.status == 200
