"""The host platform in OCI/Go terms, and platforms parsed from a flag."""

from __future__ import annotations

import platform

import pytest

from builder.image.platform import Platform
from builder.recipe.scope import host_platform


def test_host_platform_names() -> None:
    assert str(Platform.host("x86_64")) == "linux/amd64"
    # containerd normalizes arm64/v8 to plain arm64: BuildKit's BUILDPLATFORM says so too.
    assert str(Platform.host("aarch64")) == "linux/arm64"
    assert str(Platform.host("armv7l")) == "linux/arm/v7"
    assert Platform.host("mips64").architecture == "mips64"  # unknown: passed through
    # Without an argument it names this machine, through the same table.
    assert Platform.host() == Platform.host(platform.machine())


def test_the_build_args_use_the_same_table() -> None:
    for machine in ("x86_64", "aarch64", "armv7l", "i686"):
        host = Platform.host(machine)
        assert host_platform(machine) == (host.os, host.architecture, host.variant or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("Linux/X86_64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/386", "linux/386"),
        ("arm64", "linux/arm64"),
    ],
)
def test_parse_normalizes(text: str, expected: str) -> None:
    assert str(Platform.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "linux/", "a/b/c/d", "linux/amd 64", "/amd64"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid platform"):
        Platform.parse(text)
