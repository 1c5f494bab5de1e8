"""Blob uploads: skip what the registry has, mount across its repositories, else send.

A blob the repository already has (HEAD) is not sent. One that another repository of the
same registry holds is mounted (`POST ...?mount=DIGEST&from=REPO`: no bytes move). Others
are sent from the store: in one monolithic PUT when they fit in a chunk, else in PATCH
chunks and a closing PUT; a registry that refuses PATCH gets the whole blob in one PUT.
Bytes are read from the store verified: a corrupt blob is never pushed whole. Every body
streams from the store's file as it is sent, a chunk too: no chunk is held in memory, so
chunks can be large (the registry fsyncs each request's bytes before it answers: each
chunk costs a wait on the disk, as well as a round trip).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlencode

from builder.errors import RegistryError
from builder.image.descriptor import Descriptor
from builder.record import dataclass
from builder.registry.client import Repository, registry_message
from builder.registry.transport import Attempts, Stream
from builder.store.blobs import BlobStore

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

# A layer goes up in one request, as docker and skopeo send it; only a bigger one in PATCH
# chunks of this size (bodies stream from the store: a chunk costs no memory). Each chunk
# waits for the registry's fsync before the next starts: a 204 MB layer sent in two
# 128 MiB chunks took longer than in one request, which nothing gained back (a failed
# upload starts over either way).
CHUNK_SIZE = 1 << 30
_NO_PATCH = frozenset({400, 404, 405, 415, 416, 501})  # how registries say "not here"


@dataclass(frozen=True)
class _Session:
    location: str
    min_chunk: int  # OCI-Chunk-Min-Length: the registry's smallest PATCH (0: none said)


class _Counted(io.RawIOBase):
    """The blob's stream from the store, read to EOF (where the store verifies its digest),
    with each read counted for progress. With `limit`: only the next `limit` bytes of it
    (one chunk's body), and closing it leaves the blob's stream open for the next chunk."""

    def __init__(
        self, source: BinaryIO, sent: Callable[[int], None], limit: int | None = None
    ) -> None:
        super().__init__()
        self._source = source
        self._sent = sent
        self._left = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left is not None:
            size = self._left if size < 0 else min(size, self._left)
            if size == 0:
                return b""
        data = self._source.read(size)
        if self._left is not None:
            if not data:  # the request announced more bytes than it could send
                raise RegistryError("a blob is shorter in the store than its size")
            self._left -= len(data)
        self._sent(len(data))
        return data

    def close(self) -> None:
        if self._left is None:
            self._source.close()
        super().close()


class _Resend(Exception):
    """A chunk's body was asked for again (the transport retries a request that failed):
    its bytes were streamed and are gone, so the upload starts over."""


def _once(open_body: Callable[[], Stream]) -> Callable[[], Stream]:
    used = False

    def body() -> Stream:
        nonlocal used
        if used:
            raise _Resend
        used = True
        return open_body()

    return body


class _Progress:
    """Bytes of one blob sent so far (a restart goes back to zero)."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.done = 0
        self._report = report

    def reset(self) -> None:
        self.done = 0
        self._report(0)

    def __call__(self, n: int) -> None:
        if n:
            self.done += n
            self._report(self.done)


def upload_blob(
    repo: Repository,
    blob: Descriptor,
    store: BlobStore,
    mount_from: Sequence[str],
    progress: Callable[[int], None],
    chunk_size: int = CHUNK_SIZE,
) -> str:
    """Make `repo` hold the blob; returns how: "present", "mounted" or "uploaded"."""
    if repo.blob_size(blob.digest, repo.push) is not None:
        return "present"
    session = None
    for source in mount_from:
        if source == repo.name:
            continue
        query = urlencode({"mount": str(blob.digest), "from": source})
        response = repo.registry.request(
            "POST",
            f"/v2/{repo.name}/blobs/uploads/?{query}",
            scopes=(*repo.push, f"repository:{source}:pull"),
            headers={"Content-Length": "0"},
        )
        if response.status == 201:
            return "mounted"
        if response.status == 202:  # no such blob there: the registry opened an upload
            session = _session(repo, response)
            break
    session = session or _start(repo)
    sent = _Progress(progress)
    chunk = max(chunk_size, session.min_chunk)
    if blob.size > chunk:
        attempts = Attempts(repo.registry.policy)
        while True:
            try:
                if _send_chunks(repo, blob, store, session, chunk, sent):
                    return "uploaded"
                break
            except _Resend:
                if not attempts.pause():
                    raise RegistryError(
                        f"the upload of blob {blob.digest} to registry {repo.registry.host}"
                        f" kept failing (gave up after {attempts.tried()})"
                    ) from None
            sent.reset()
            session = _start(repo)  # a fresh session: the failed one holds partial bytes
        sent.reset()
        session = _start(repo)  # the refused PATCH may have spoilt that session
    _put(repo, blob, session, lambda: _Counted(store.open(blob.digest), sent))
    return "uploaded"


def _start(repo: Repository) -> _Session:
    response = repo.registry.request(
        "POST",
        f"/v2/{repo.name}/blobs/uploads/",
        scopes=repo.push,
        headers={"Content-Length": "0"},
    )
    if response.status != 202:
        raise RegistryError(
            f"registry {repo.registry.host} refused an upload to {repo.name}:"
            f" {registry_message(response)}"
        )
    return _session(repo, response)


def _session(repo: Repository, response: BaseHTTPResponse) -> _Session:
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(
            f"registry {repo.registry.host} opened an upload to {repo.name} without a Location"
        )
    minimum = response.headers.get("OCI-Chunk-Min-Length", "")
    return _Session(location, int(minimum) if minimum.isdigit() else 0)


def _send_chunks(
    repo: Repository,
    blob: Descriptor,
    store: BlobStore,
    session: _Session,
    chunk: int,
    sent: _Progress,
) -> bool:
    """PATCH the blob in chunks, then close with PUT; False when the registry refuses the
    first PATCH (the caller then sends the blob whole). _Resend when a chunk would have to
    be sent again."""
    location = session.location
    offset = 0
    with store.open(blob.digest) as source:
        while offset < blob.size:
            length = min(chunk, blob.size - offset)

            def window(length: int = length) -> Stream:
                return _Counted(source, sent, length)

            response = repo.registry.request(
                "PATCH",
                location,
                scopes=repo.push,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=_once(window),
            )
            if offset == 0 and response.status in _NO_PATCH:
                return False
            if response.status != 202:
                raise RegistryError(
                    f"registry {repo.registry.host} refused a chunk of blob {blob.digest}:"
                    f" {registry_message(response)}"
                )
            location = _session(repo, response).location
            offset += length
        if source.read(1):  # at EOF the store verifies the digest: a corrupt blob stops here
            raise RegistryError(f"blob {blob.digest} is longer in the store than its size")
    _put(repo, blob, _Session(location, 0), None)
    return True


def _put(
    repo: Repository, blob: Descriptor, session: _Session, body: Callable[[], Stream] | None
) -> None:
    """The closing PUT: the whole blob (monolithic), or nothing after the chunks."""
    sep = "&" if "?" in session.location else "?"
    response = repo.registry.request(
        "PUT",
        f"{session.location}{sep}{urlencode({'digest': str(blob.digest)})}",
        scopes=repo.push,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(blob.size if body is not None else 0),
        },
        body=body if body is not None else b"",
    )
    if response.status != 201:
        raise RegistryError(
            f"registry {repo.registry.host} refused blob {blob.digest} of {repo.name}:"
            f" {registry_message(response)}"
        )
