from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar built by Python's tarfile (PAX), for feeding unpack_layer hostile input."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_000_000
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


@pytest.fixture
def tree(tmp_path: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        p = tmp_path / name
        p.mkdir()
        return p

    return make
