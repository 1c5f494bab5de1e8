"""The warm server's stale-code check (builder/cli/codewatch.py), on a real tree: inotify,
and the stat fallback for when no watch can be made."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import client, codewatch


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "builder"
    (root / "cli" / "__pycache__").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "cli" / "main.py").write_text("x = 1\n")
    monkeypatch.setattr(client, "package_dir", lambda: str(root))
    return root


@pytest.fixture(params=["inotify", "stat"])
def watch(
    request: pytest.FixtureRequest, package: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[codewatch.CodeWatch]:
    if request.param == "stat":
        monkeypatch.setattr(codewatch, "_watch", lambda root: -1)
    made = codewatch.CodeWatch()
    assert (made.fd >= 0) == (request.param == "inotify")
    yield made
    if made.fd >= 0:
        os.close(made.fd)


def test_bytecode_is_not_a_change(watch: codewatch.CodeWatch, package: Path) -> None:
    assert not watch.changed()
    (package / "__pycache__").mkdir()
    (package / "cli" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"pyc")
    assert not watch.changed()


def test_a_touched_file_is(watch: codewatch.CodeWatch, package: Path) -> None:
    module = package / "cli" / "main.py"
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert watch.changed()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert watch.changed()  # once stale, stale: the server stops taking calls


def test_a_new_file_in_a_subdirectory_is(watch: codewatch.CodeWatch, package: Path) -> None:
    assert not watch.changed()
    (package / "cli" / "extra.py").write_text("")
    assert watch.changed()


def test_a_removed_file_is(watch: codewatch.CodeWatch, package: Path) -> None:
    (package / "cli" / "main.py").unlink()
    assert watch.changed()
