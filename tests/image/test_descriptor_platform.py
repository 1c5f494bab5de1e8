"""The host platform in OCI/Go terms."""

from __future__ import annotations

import platform

from builder.image.descriptor import Platform


def test_host_platform_names() -> None:
    assert str(Platform.host("x86_64")) == "linux/amd64"
    assert str(Platform.host("aarch64")) == "linux/arm64/v8"
    assert str(Platform.host("armv7l")) == "linux/arm/v7"
    assert Platform.host("mips64").architecture == "mips64"  # unknown: passed through
    # Without an argument it names this machine, through the same table.
    assert Platform.host() == Platform.host(platform.machine())
