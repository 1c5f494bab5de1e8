"""The on-disk cache of compiled seccomp programs (sandbox/seccomp_cache.py): a hit returns
the stored program without compiling, anything that does not check out is a miss that
compiles and writes the entry again, and the key follows what the program depends on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.sandbox import seccomp, seccomp_cache
from builder.sandbox.capabilities import DEFAULT
from tests.e2e.support import REPO

ADMIN = DEFAULT | {"CAP_SYS_ADMIN"}


@pytest.fixture(autouse=True)
def _no_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call goes to the directory, as in a new process."""
    monkeypatch.setattr(seccomp_cache, "_compiled", {})


@pytest.fixture(autouse=True)
def host(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's dir, one per test, beside tmp_path (the tests run as host root: used)."""
    path = tmp_path_factory.mktemp("host") / "seccomp"
    monkeypatch.setattr(seccomp_cache, "HOST_DIR", path)
    return path


def _entry(directory: Path) -> Path:
    (entry,) = directory.iterdir()
    return entry


def _split(entry: Path) -> tuple[dict[str, object], bytes]:
    data = entry.read_bytes()
    assert data.startswith(seccomp_cache.MAGIC)
    line, _, body = data[len(seccomp_cache.MAGIC) :].partition(b"\n")
    return json.loads(line), body


def _write(entry: Path, header: dict[str, object], body: bytes) -> None:
    entry.write_bytes(seccomp_cache.MAGIC + json.dumps(header).encode() + b"\n" + body)


def _fresh(directory: Path, caps: frozenset[str] = DEFAULT) -> bytes:
    seccomp_cache._compiled.clear()
    return seccomp_cache.program("default", caps, directory)


def test_a_miss_compiles_and_stores_what_libseccomp_makes(tmp_path: Path) -> None:
    program = _fresh(tmp_path / "cache")
    assert program == seccomp.compile_filter(seccomp.default_profile(), DEFAULT)
    header, body = _split(_entry(tmp_path / "cache"))
    assert body == program
    assert _entry(seccomp_cache.HOST_DIR).read_bytes() == _entry(tmp_path / "cache").read_bytes()
    library = header["library"]
    assert isinstance(library, dict) and "libseccomp.so" in str(library["path"])


def test_a_hit_is_the_stored_program(tmp_path: Path) -> None:
    _fresh(tmp_path)
    entry = _entry(tmp_path)
    header, _ = _split(entry)
    # Another valid program under this key, its checksum right: served as is, so a hit
    # really reads the file rather than compiling.
    other = seccomp.compile_filter(seccomp.default_profile(), ADMIN)
    _write(entry, {**header, "sha256": hashlib.sha256(other).hexdigest()}, other)
    assert _fresh(tmp_path) == other


def test_a_hit_neither_parses_the_profile_nor_loads_libseccomp(tmp_path: Path) -> None:
    _fresh(tmp_path)
    probe = (
        "import sys; from pathlib import Path; from builder.sandbox import seccomp_cache;"
        "from builder.sandbox.capabilities import DEFAULT;"
        f"p = seccomp_cache.program('default', DEFAULT, Path({str(tmp_path)!r}));"
        "print(len(p), sorted(m for m in sys.modules if 'seccomp' in m or m == 'ctypes'))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout.split(" ", 1)
    assert int(out[0]) == len(_split(_entry(tmp_path))[1])
    assert out[1].strip() == "['builder.sandbox.seccomp_cache']"


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "empty", "other magic", "bad checksum", "odd length", "no header"],
)
def test_a_damaged_entry_is_a_miss_and_is_written_again(tmp_path: Path, damage: str) -> None:
    good = _fresh(tmp_path)
    entry = _entry(tmp_path)
    _, body = _split(entry)
    data = entry.read_bytes()
    damaged = {
        "truncated": data[:-3],
        "garbage": os.urandom(len(data)),
        "empty": b"",
        "other magic": b"builder-seccomp-program 0\n" + data[len(seccomp_cache.MAGIC) :],
        "bad checksum": data[:-8] + bytes(8),
        "odd length": data + b"\0",
        "no header": seccomp_cache.MAGIC + body,
    }[damage]
    entry.write_bytes(damaged)
    assert seccomp_cache.load(entry) is None
    assert _fresh(tmp_path) == good
    assert entry.read_bytes() == data  # rewritten whole


@pytest.mark.parametrize("change", ["inode", "size", "mtime_ns", "path"])
def test_another_libseccomp_is_a_miss(tmp_path: Path, change: str) -> None:
    good = _fresh(tmp_path)
    entry = _entry(tmp_path)
    header, _ = _split(entry)
    library = dict(header["library"])  # type: ignore[call-overload]
    if change == "path":
        library["path"] = str(tmp_path / "libseccomp.so.2.9.9")  # an upgrade removed it
    else:
        library["ino" if change == "inode" else change] += 1
    other = seccomp.compile_filter(seccomp.default_profile(), ADMIN)
    _write(entry, {"library": library, "sha256": hashlib.sha256(other).hexdigest()}, other)
    assert _fresh(tmp_path) == good


def test_the_key_follows_caps_profile_and_kernel(tmp_path: Path) -> None:
    base = seccomp_cache.key(b"{}", DEFAULT)
    assert seccomp_cache.key(b"{}", ADMIN) != base
    assert seccomp_cache.key(b"{ }", DEFAULT) != base
    assert base in {seccomp_cache.key(b"{}", frozenset(sorted(DEFAULT)))}  # order-free
    assert _fresh(tmp_path / "s") != _fresh(tmp_path / "s", ADMIN)
    assert len(list((tmp_path / "s").iterdir())) == 2


def test_an_edited_profile_file_is_compiled_again(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    deny = (
        '{"defaultAction": "SCMP_ACT_ALLOW",'
        ' "syscalls": [{"names": [%s], "action": "SCMP_ACT_ERRNO"}]}'
    )
    profile.write_text(deny % '"mkdir"')
    first = seccomp_cache.program(str(profile), DEFAULT, tmp_path / "cache")
    profile.write_text(deny % '"mkdir", "rmdir"')
    seccomp_cache._compiled.clear()
    second = seccomp_cache.program(str(profile), DEFAULT, tmp_path / "cache")
    assert first != second
    assert second == seccomp.compile_filter(seccomp.read_profile(profile), DEFAULT)


def test_an_unwritable_cache_still_gives_the_program(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert _fresh(blocked) == seccomp.compile_filter(seccomp.default_profile(), DEFAULT)
    assert blocked.read_text() == "not a directory"


# -- the host's dir ----------------------------------------------------------------------


def test_a_fresh_store_takes_the_hosts_program_without_libseccomp(
    tmp_path: Path, host: Path
) -> None:
    good = _fresh(tmp_path / "first")
    probe = (
        "import sys; from pathlib import Path; from builder.sandbox import seccomp_cache;"
        "from builder.sandbox.capabilities import DEFAULT;"
        f"seccomp_cache.HOST_DIR = Path({str(host)!r});"
        f"p = seccomp_cache.program('default', DEFAULT, Path({str(tmp_path / 'second')!r}));"
        "print(p.hex(), sorted(m for m in sys.modules if 'seccomp' in m or m == 'ctypes'))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout.split(" ", 1)
    assert bytes.fromhex(out[0]) == good
    assert out[1].strip() == "['builder.sandbox.seccomp_cache']"
    # ...and copied into the store's dir, whole.
    assert _entry(tmp_path / "second").read_bytes() == _entry(host).read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "other program", "garbage"])
def test_a_damaged_host_entry_is_a_miss_and_is_written_again(
    tmp_path: Path, host: Path, damage: str
) -> None:
    good = _fresh(tmp_path / "first")
    entry = _entry(host)
    data = entry.read_bytes()
    header, _ = _split(entry)
    other = seccomp.compile_filter(seccomp.default_profile(), ADMIN)
    entry.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "other program": seccomp_cache.MAGIC + json.dumps(header).encode() + b"\n" + other,
            "garbage": os.urandom(len(data)),
        }[damage]
    )
    assert _fresh(tmp_path / "second") == good
    assert entry.read_bytes() == data
    assert _split(_entry(tmp_path / "second"))[1] == good


@pytest.mark.parametrize("loose", ["group-writable", "another owner"])
def test_a_host_dir_others_could_write_is_not_used(tmp_path: Path, host: Path, loose: str) -> None:
    _fresh(tmp_path / "first")
    entry = _entry(host)
    entry.write_bytes(entry.read_bytes()[:-8] + bytes(8))  # would be refused anyway...
    planted = seccomp.compile_filter(seccomp.default_profile(), ADMIN)
    header = {**_split(entry)[0], "sha256": hashlib.sha256(planted).hexdigest()}
    _write(entry, header, planted)  # ...but this one checks out: a planted program
    if loose == "group-writable":
        host.chmod(0o770)
    else:
        os.chown(host, 1000, 1000)
    assert _fresh(tmp_path / "second") == seccomp.compile_filter(seccomp.default_profile(), DEFAULT)
    assert _entry(host).read_bytes().endswith(planted)  # neither read nor written
