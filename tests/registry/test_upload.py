"""Uploads against a scripted registry: skip, mount, chunks, and a whole PUT when PATCH is
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import StoreError
from builder.image.descriptor import Descriptor
from builder.image.mediatypes import MediaType
from builder.registry.client import Registry
from builder.registry.settings import Settings
from builder.registry.transport import RetryPolicy
from builder.registry.upload import upload_blob
from builder.store import Store
from tests.registry.scripted import Answer, Handler, Script, Seen

QUICK = RetryPolicy(attempts=1, connect_timeout=2, read_timeout=2)
DATA = bytes(range(256)) * 40  # 10 KiB


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Store, Descriptor]:
    store = Store.open(tmp_path / "store")
    return store, store.layout.put(DATA, MediaType.OCI_LAYER)


def _upload(
    host: str, blob: tuple[Store, Descriptor], chunk: int, mounts: tuple[str, ...] = ()
) -> str:
    store, desc = blob
    repo = Registry(host, Settings(), QUICK, lambda: None).repository("app")
    return upload_blob(repo, desc, store.layout, mounts, lambda _done: None, chunk)


def _put_checks(expected: bytes) -> Handler:
    def put(seen: Seen) -> Answer:
        return Answer(201) if seen.body == expected else Answer(400)

    return put


def test_a_blob_the_repository_has_is_not_sent(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    script.on(f"HEAD /v2/app/blobs/{blob[1].digest}", Answer(200, headers={"X": "y"}))
    assert _upload(host, blob, 1 << 20) == "present"
    assert [s.method for s in script.seen] == ["HEAD"]


def test_a_blob_another_repository_has_is_mounted(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    script.on("POST /v2/app/blobs/uploads/", Answer(201))
    assert _upload(host, blob, 1 << 20, ("other",)) == "mounted"
    post = script.seen[-1]
    assert (
        post.path == f"/v2/app/blobs/uploads/?mount={blob[1].digest.replace(':', '%3A')}&from=other"
    )


def test_chunks_then_a_closing_put(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    received: list[bytes] = []

    def patch(seen: Seen) -> Answer:
        start = int(seen.headers["Content-Range"].split("-")[0])
        assert start == sum(map(len, received))
        received.append(seen.body)
        return Answer(202, headers={"Location": f"/upload/{len(received)}"})

    script.on("POST /v2/app/blobs/uploads/", Answer(202, headers={"Location": "/upload/0"}))
    for n in range(4):
        script.on(f"PATCH /upload/{n}", patch)
    script.on("PUT /upload/3", _put_checks(b""))
    assert _upload(host, blob, 4096) == "uploaded"
    assert b"".join(received) == DATA and len(received) == 3
    assert script.seen[-1].path == f"/upload/3?digest={blob[1].digest.replace(':', '%3A')}"


def test_a_registry_refusing_patch_gets_the_blob_in_one_put(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    script.on(
        "POST /v2/app/blobs/uploads/",
        [
            Answer(202, headers={"Location": "/upload/a"}),
            Answer(202, headers={"Location": "/upload/b"}),
        ],
    )
    script.on("PATCH /upload/a", Answer(405))
    script.on("PUT /upload/b", _put_checks(DATA))
    assert _upload(host, blob, 4096) == "uploaded"
    assert [s.method for s in script.seen] == ["HEAD", "POST", "PATCH", "POST", "PUT"]


def test_a_small_blob_goes_in_one_monolithic_put(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    script.on(
        "POST /v2/app/blobs/uploads/", Answer(202, headers={"Location": "/upload/x?_state=s"})
    )
    script.on("PUT /upload/x", _put_checks(DATA))
    assert _upload(host, blob, 1 << 20) == "uploaded"
    assert [s.method for s in script.seen] == ["HEAD", "POST", "PUT"]
    assert script.seen[-1].path.startswith("/upload/x?_state=s&digest=sha256")


def test_a_blob_corrupt_in_the_store_is_never_completed(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    """The chunks may go out, but the closing PUT that makes the registry take the blob
    does not: the store's read to EOF refuses bytes that do not hash to the digest."""
    store, desc = blob
    store.paths.blob(desc.digest).write_bytes(DATA[::-1])  # same size, other bytes
    script.on("POST /v2/app/blobs/uploads/", Answer(202, headers={"Location": "/upload/0"}))
    for n in range(3):
        script.on(f"PATCH /upload/{n}", Answer(202, headers={"Location": f"/upload/{n + 1}"}))
    with pytest.raises(StoreError, match="corrupt"):
        _upload(host, blob, 4096)
    assert "PUT" not in [s.method for s in script.seen]


def test_a_chunk_the_registry_fails_starts_the_upload_over(
    script: Script, host: str, blob: tuple[Store, Descriptor]
) -> None:
    """A chunk streams from the store and is not kept: when the registry fails it, the blob
    goes up again from its first byte, in a new upload session."""
    script.on(
        "POST /v2/app/blobs/uploads/",
        [
            Answer(202, headers={"Location": "/upload/a"}),
            Answer(202, headers={"Location": "/upload/b0"}),
        ],
    )
    script.on("PATCH /upload/a", Answer(500))
    received: list[bytes] = []

    def patch(seen: Seen) -> Answer:
        assert seen.headers["Content-Range"].startswith(f"{4096 * len(received)}-")
        received.append(seen.body)
        return Answer(202, headers={"Location": f"/upload/b{len(received)}"})

    for n in range(3):
        script.on(f"PATCH /upload/b{n}", patch)
    script.on("PUT /upload/b3", _put_checks(b""))
    store, desc = blob
    retrying = RetryPolicy(attempts=3, first_delay=0.01, connect_timeout=2, read_timeout=2)
    repo = Registry(host, Settings(), retrying, lambda: None).repository("app")
    assert upload_blob(repo, desc, store.layout, (), lambda _done: None, 4096) == "uploaded"
    assert b"".join(received) == DATA
    assert script.count("PATCH /upload/a") == 1 and script.count("POST /v2/app/blobs/uploads/") == 2
