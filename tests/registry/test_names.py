"""References to registry URLs: which host answers, which repository path is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image.reference import Reference
from builder.registry.client import api_host
from builder.registry.pull import pull
from builder.registry.settings import Settings
from builder.registry.transport import RetryPolicy, split_host
from builder.store import Store
from tests.registry.scripted import FakeImage, Script


@pytest.mark.parametrize(
    ("name", "host", "repository", "reference"),
    [
        ("busybox", "registry-1.docker.io", "library/busybox", "latest"),
        ("docker.io/library/busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36"),
        ("index.docker.io/org/app", "registry-1.docker.io", "org/app", "latest"),
        ("ghcr.io/org/team/app:v2", "ghcr.io", "org/team/app", "v2"),
        ("localhost:5000/app", "localhost:5000", "app", "latest"),
        (f"app@sha256:{'a' * 64}", "registry-1.docker.io", "library/app", f"sha256:{'a' * 64}"),
    ],
)
def test_a_reference_names_a_host_a_repository_and_a_tag_or_digest(
    name: str, host: str, repository: str, reference: str
) -> None:
    ref = Reference.parse(name)
    assert api_host(ref.registry) == host
    assert ref.repository == repository
    assert (str(ref.digest) if ref.digest else ref.tag) == reference


def test_split_host() -> None:
    assert split_host("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert split_host("[::1]:5000") == ("::1", 5000)
    assert split_host("ghcr.io") == ("ghcr.io", None)


def test_a_pull_asks_for_the_repository_path_and_tags_the_familiar_name(
    script: Script, host: str, tmp_path: Path
) -> None:
    FakeImage.make(b"bytes").serve_on(script, "team/app", "v1")
    store = Store.open(tmp_path / "store")
    pull(store, f"{host}/team/app:v1", settings=Settings(), policy=RetryPolicy(attempts=1))
    assert script.seen[0].path == "/v2/team/app/manifests/v1"
    assert [name for name, _ in store.layout.refs()] == [f"{host}/team/app:v1"]
