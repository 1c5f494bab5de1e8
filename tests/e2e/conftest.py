"""End-to-end fixtures: a store per test, a busybox base image, the CLI.

The real registries (`registry`, `tls_registry`, …) come from tests/registry/fixtures.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.support import Builder, busybox_module


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_module().make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def busybox_store(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    """A store holding busybox:latest, imported once and copied per test.

    The base layer is gzip so that images built on it with `--compression gzip` can be
    checked by umoci 0.4.7 and oci-image-tool 1.0.0-rc1 (Debian 12), which predate image-spec
    1.1's zstd layer type and reject any zstd layer.
    """
    root = tmp_path_factory.mktemp("base-store") / "store"
    Builder(root)("import", "--compression", "gzip", busybox_rootfs, "busybox:latest")
    return root


@pytest.fixture
def builder(tmp_path: Path, busybox_store: Path) -> Builder:
    root = tmp_path / "store"
    shutil.copytree(busybox_store, root, symlinks=True)
    return Builder(root)
