"""End-to-end fixtures: a store per test, a busybox base image, the CLI, a real registry."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real docker-registry (Debian's distribution) on 127.0.0.1, for this session only."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    assert os.path.exists(binary), "docker-registry is not installed (make test installs it)"
    port = _free_port()
    data = tmp_path_factory.mktemp("registry")
    config = data / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {data}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("docker-registry did not start")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
