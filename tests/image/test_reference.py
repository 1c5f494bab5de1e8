import pytest

from builder.errors import UsageError
from builder.image.reference import Reference, normalize

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "normal", "registry", "repository"),
    [
        ("busybox", "busybox:latest", "docker.io", "library/busybox"),
        ("docker.io/library/busybox:1.36", "busybox:1.36", "docker.io", "library/busybox"),
        ("index.docker.io/foo/bar", "foo/bar:latest", "docker.io", "foo/bar"),
        ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1", "localhost:5000", "a/b"),
        ("localhost/x", "localhost/x:latest", "localhost", "x"),
        ("ghcr.io/o/r@" + DIGEST, "ghcr.io/o/r@" + DIGEST, "ghcr.io", "o/r"),
        ("my_app-1.x:tag_1.0-rc", "my_app-1.x:tag_1.0-rc", "docker.io", "library/my_app-1.x"),
        ("a__b", "a__b:latest", "docker.io", "library/a__b"),
        ("[::1]:5000/img:t", "[::1]:5000/img:t", "[::1]:5000", "img"),
    ],
)
def test_parse(text: str, normal: str, registry: str, repository: str) -> None:
    ref = Reference.parse(text)
    assert str(ref) == normal == normalize(normal)
    assert ref.registry == registry
    assert ref.repository == repository


@pytest.mark.parametrize(
    "bad",
    ["", "Busybox", "foo/Bar", "a:b:c", "-a", "a..b", "a/", "/a", "a:", "a:-tag",
     "a@sha256:123", "a:" + "t" * 129, "x" * 256, "a b", "UPPER.io:x/y"],
)  # fmt: skip
def test_invalid(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid image reference"):
        Reference.parse(bad)


def test_digest_without_tag_keeps_no_tag() -> None:
    ref = Reference.parse("busybox@" + DIGEST)
    assert ref.tag is None and ref.digest == DIGEST
    assert Reference.parse("busybox:1@" + DIGEST).tag == "1"


def test_trailing_newline_is_not_a_valid_name() -> None:
    with pytest.raises(UsageError):
        Reference.parse("busybox\n")
