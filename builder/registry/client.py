"""The distribution API of one registry: authorized requests, manifests and blobs.

`Registry` is a host (its transport and its authorizer); `Repository` is a name on it, with
the calls pull and push make: a manifest by tag or digest, a blob's HEAD, a blob streamed
into the store and verified on the way (uploads are in upload.py).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from builder.errors import ImageNotFound, RegistryError
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import MediaType
from builder.image.reference import DOCKER_HUB
from builder.record import dataclass
from builder.registry.auth import Authorizer
from builder.registry.credentials import Credentials, credentials_for
from builder.registry.settings import Settings
from builder.registry.transport import Attempts, Body, Interrupted, RetryPolicy, Transport
from builder.store.blobs import BlobStore

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

MANIFEST_TYPES = (
    MediaType.OCI_INDEX,
    MediaType.OCI_MANIFEST,
    MediaType.DOCKER_MANIFEST_LIST,
    MediaType.DOCKER_MANIFEST,
)
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
MAX_MANIFEST = 4 << 20  # what distribution itself accepts
_CHUNK = 1 << 20
_PROGRESS_EVERY = 0.2  # seconds between progress callbacks of one blob


def api_host(host: str) -> str:
    """Where a registry's API answers: Docker Hub's names are served by registry-1."""
    return "registry-1.docker.io" if host == DOCKER_HUB else host


def registry_message(response: BaseHTTPResponse) -> str:
    """The distribution error body's words ("MANIFEST_UNKNOWN: manifest unknown"), if any."""
    try:
        errors = json.loads(response.data or b"{}").get("errors") or []
        words = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
    except (ValueError, AttributeError, TypeError):
        words = []
    status = f"{response.status} {response.reason or ''}".strip()
    return f"{status} ({'; '.join(words)})" if words else status


class Registry:
    """One registry host; requests carry the auth its answers ask for."""

    def __init__(
        self,
        host: str,
        settings: Settings,
        policy: RetryPolicy | None = None,
        credentials: Callable[[], Credentials | None] | None = None,
    ) -> None:
        self.host = host
        self.policy = policy or RetryPolicy.from_env()
        self.transport = Transport(api_host(host), settings, self.policy)
        lookup = credentials or (lambda: credentials_for(host))
        self.auth = Authorizer(host, settings, lookup, self.policy)

    def request(
        self,
        method: str,
        target: str,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
    ) -> BaseHTTPResponse:
        """A request with the Authorization the scopes need; one retry after a 401."""
        sent = self.auth.header(scopes)
        response = self._send(method, target, headers, body, stream, sent)
        if response.status != 401:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        _drain(response)
        retry_with = self.auth.challenged(challenge, scopes, sent)
        response = self._send(method, target, headers, body, stream, retry_with)
        if response.status == 401:
            _drain(response)
            raise self.auth.refused(scopes)
        return response

    def _send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None,
        body: Body,
        stream: bool,
        authorization: str | None,
    ) -> BaseHTTPResponse:
        all_headers = dict(headers or {})
        if authorization:
            all_headers["Authorization"] = authorization
        return self.transport.request(method, target, headers=all_headers, body=body, stream=stream)

    def check_login(self) -> None:
        """GET /v2/ with the credentials: RegistryError unless the registry accepts them."""
        response = self.request("GET", "/v2/", scopes=())
        if response.status != 200:
            raise RegistryError(f"registry {self.host}: /v2/ answered {registry_message(response)}")

    def repository(self, name: str) -> Repository:
        return Repository(self, name)


@dataclass(frozen=True)
class Fetched:
    """A manifest or index exactly as the registry served it."""

    media_type: str
    data: bytes
    digest: Digest


class Repository:
    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name
        self.pull: tuple[str, ...] = (f"repository:{name}:pull",)
        self.push: tuple[str, ...] = (f"repository:{name}:pull,push",)

    @property
    def where(self) -> str:
        return f"{self.registry.host}/{self.name}"

    # -- manifests -------------------------------------------------------------------------

    def manifest(self, reference: str) -> Fetched:
        """The manifest or index a tag or digest names, verified against the digest (asked
        for, or announced in Docker-Content-Digest). ImageNotFound for a 404."""
        response = self.registry.request(
            "GET",
            f"/v2/{self.name}/manifests/{reference}",
            scopes=self.pull,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            stream=True,
        )
        try:
            if response.status == 404:
                raise ImageNotFound(f"no image {self.where}:{reference} in the registry")
            if response.status != 200:
                raise RegistryError(
                    f"registry {self.registry.host}: manifest {self.name}:{reference}:"
                    f" {registry_message(response)}"
                )
            with self.registry.transport.reading():
                data = response.read(MAX_MANIFEST + 1)
        finally:
            _release(response)
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"{self.where}:{reference}: manifest larger than 4 MiB")
        media_type = _media_type(response.headers.get("Content-Type", ""), data)
        if media_type in SCHEMA1_TYPES:
            raise RegistryError(
                f"{self.where}:{reference} is a Docker schema 1 manifest, which is not"
                " supported (deprecated since 2017): push it again with a current docker,"
                " buildah or skopeo"
            )
        digest = Digest.of_bytes(data)
        expected = reference if reference.startswith("sha256:") else None
        expected = expected or response.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise RegistryError(
                f"{self.where}:{reference}: the manifest does not match its digest"
                f" {expected} (it hashes to {digest}); nothing was stored"
            )
        return Fetched(media_type, data, digest)

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> Digest:
        response = self.registry.request(
            "PUT",
            f"/v2/{self.name}/manifests/{reference}",
            scopes=self.push,
            headers={"Content-Type": media_type},
            body=data,
        )
        if response.status not in (200, 201):
            raise RegistryError(
                f"registry {self.registry.host} refused the manifest of"
                f" {self.name}:{reference}: {registry_message(response)}"
            )
        digest = Digest.of_bytes(data)
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise RegistryError(
                f"registry {self.registry.host} stored {self.name}:{reference} as {announced},"
                f" not as the {digest} we sent"
            )
        return digest

    # -- blobs -----------------------------------------------------------------------------

    def blob_size(self, digest: Digest, scopes: tuple[str, ...] | None = None) -> int | None:
        """HEAD: the blob's size, or None when the repository does not have it."""
        response = self.registry.request(
            "HEAD", f"/v2/{self.name}/blobs/{digest}", scopes=scopes or self.pull
        )
        if response.status == 404:
            return None
        if response.status != 200:
            raise RegistryError(
                f"registry {self.registry.host}: blob {digest} of {self.name}:"
                f" {registry_message(response)}"
            )
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else 0

    def download(self, blob: Descriptor, store: BlobStore, progress: Callable[[int], None]) -> None:
        """Stream the blob into the store: it is committed only whole and matching its
        digest and size. A transfer that breaks off starts again (within the retry budget);
        bytes that do not match are refused at once."""
        attempts = Attempts(self.registry.policy)
        while True:
            try:
                self._download_once(blob, store, progress)
                return
            except Interrupted:
                progress(0)
                if not attempts.pause():
                    raise

    def _download_once(
        self, blob: Descriptor, store: BlobStore, progress: Callable[[int], None]
    ) -> None:
        response = self.registry.request(
            "GET", f"/v2/{self.name}/blobs/{blob.digest}", scopes=self.pull, stream=True
        )
        try:
            if response.status != 200:
                if response.status == 404:
                    raise RegistryError(f"{self.where}: blob {blob.digest} is missing")
                raise RegistryError(
                    f"registry {self.registry.host}: blob {blob.digest} of {self.name}:"
                    f" {registry_message(response)}"
                )
            with store.writer() as writer, _WriteBehind(writer.write) as write:
                last = time.monotonic()
                received = 0
                chunks = response.stream(_CHUNK)
                while True:
                    # Only the network read is "interrupted"; a store write error is no
                    # reason to download again.
                    with self.registry.transport.reading():
                        chunk = next(chunks, None)
                    if chunk is None:
                        break
                    received += len(chunk)
                    if received > blob.size:
                        raise self._mismatch(blob, f"more than its {blob.size} bytes")
                    write(chunk)
                    now = time.monotonic()
                    if now - last >= _PROGRESS_EVERY:  # a callback per chunk is too many
                        progress(received)
                        last = now
                if received < blob.size:
                    raise Interrupted(
                        f"the transfer of blob {blob.digest} from registry"
                        f" {self.registry.host} broke off at {received} of {blob.size} bytes"
                    )
                write.flush()
                if writer.digest != blob.digest:
                    raise self._mismatch(blob, f"bytes that hash to {writer.digest}")
                writer.commit(blob.media_type)
                progress(writer.size)
        finally:
            _release(response)

    def _mismatch(self, blob: Descriptor, what: str) -> RegistryError:
        return RegistryError(
            f"{self.where}: blob {blob.digest} does not match its digest (the registry sent"
            f" {what}); it was not stored"
        )


class _WriteBehind:
    """A blob's chunks written to the store (hashed, then written) by a thread of their own,
    in order, while the next chunk comes in from the network: hashing, writing and receiving
    all release the GIL, so they overlap instead of taking turns. At most `depth` chunks
    wait (memory stays bounded); a write's error is raised by a later call or by flush()."""

    def __init__(self, write: Callable[[bytes], object], depth: int = 4) -> None:
        self._write = write
        self._depth = depth
        self._pending: deque[Future[object]] = deque()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pull-write")

    def __enter__(self) -> _WriteBehind:
        return self

    def __call__(self, chunk: bytes) -> None:
        if len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, chunk))

    def flush(self) -> None:
        """Wait until every chunk is written."""
        while self._pending:
            self._pending.popleft().result()

    def __exit__(self, *exc: object) -> None:
        # After an error the waiting chunks are dropped; the one being written is waited
        # for, so the store's writer is not closed under it.
        self._pool.shutdown(wait=True, cancel_futures=True)


def _media_type(content_type: str, data: bytes) -> str:
    """The Content-Type, else the document's own mediaType (some registries send neither
    right: a schema 1 manifest says so in its body)."""
    value = content_type.split(";", 1)[0].strip()
    if value and value not in ("application/json", "application/octet-stream", "text/plain"):
        return value
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError("the registry sent a manifest that is not JSON") from None
    if isinstance(doc, dict):
        if isinstance(doc.get("mediaType"), str):
            return str(doc["mediaType"])
        if doc.get("schemaVersion") == 1:
            return "application/vnd.docker.distribution.manifest.v1+json"
        if "manifests" in doc:
            return str(MediaType.OCI_INDEX)
    return str(MediaType.OCI_MANIFEST)


def _release(response: BaseHTTPResponse) -> None:
    """Give the connection back when its body was read to the end; drop it when bytes are
    left unread (an error midway), so the next request does not read them as its answer."""
    if response.length_remaining != 0:
        response.close()
    response.release_conn()


def _drain(response: BaseHTTPResponse) -> None:
    """Read a small error body to its end and give the connection back."""
    response.drain_conn()
    response.release_conn()
