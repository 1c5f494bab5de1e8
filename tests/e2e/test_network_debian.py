"""The issue's test of the default network: a Debian base made with debootstrap from the
mirror apt on this machine uses, then a recipe with default flags that runs
`apt-get update && apt-get install -y jq` and then `jq --version`.

The base is made once per machine (minbase, about a minute) and kept as a tarball in
/var/cache/builder-tests (or $BUILDER_TEST_CACHE), keyed by suite and architecture; a lock
lets parallel sessions share it, and a half-made one is never seen (temp name, rename).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.support import Builder, make_context

CACHE = Path(os.environ.get("BUILDER_TEST_CACHE", "/var/cache/builder-tests"))
FALLBACK = ("http://deb.debian.org/debian", "bookworm")


def apt_mirror(sources: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(mirror URI, suite) of the host's first Debian source that is not security or
    updates: apt's own configuration (one-line lists and deb822 .sources)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources", ""):
            continue
        text = path.read_text(errors="replace")
        stanzas = text.split("\n\n") if path.suffix == ".sources" else []
        for stanza in stanzas:
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines())
                if not k.startswith("#") and v
            )
            uris, suites = fields.get("uris", "").split(), fields.get("suites", "").split()
            if "deb" in fields.get("types", "").split() and fields.get("enabled") != "no":
                for uri in uris:
                    for suite in suites:
                        if _is_base(uri, suite):
                            return uri, suite
        for line in text.splitlines() if path.suffix != ".sources" else []:
            words = [w for w in line.split("#")[0].split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and _is_base(words[1], words[2]):
                return words[1], words[2]
    return FALLBACK


def _is_base(uri: str, suite: str) -> bool:
    return uri.rstrip("/").endswith("/debian") and "-" not in suite and "/" not in suite


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _unmount_under(root: Path) -> None:
    """debootstrap mounts /proc and /sys in its target and may leave them after a failure:
    never walk into those with a recursive delete."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def debian_tarball() -> Path:
    uri, suite = apt_mirror()
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"debian-{suite}-minbase-{arch}.tar"
    with _locked(CACHE / f"{tarball.name}.lock"):
        if tarball.exists():
            return tarball
        if shutil.which("debootstrap") is None:
            pytest.fail("debootstrap is not installed: `make setup` installs it")
        work = Path(tempfile.mkdtemp(dir=CACHE, prefix=".make-"))
        try:
            t0 = time.monotonic()
            subprocess.run(
                ["debootstrap", "--variant=minbase", f"--arch={arch}", suite, work / "root", uri],
                check=True,
                capture_output=True,
            )
            took = time.monotonic() - t0
            partial = work / "base.tar"
            subprocess.run(
                ["tar", "--numeric-owner", "-C", work / "root", "-cf", partial, "."], check=True
            )
            with open(partial, "rb") as f:
                os.fsync(f.fileno())
            os.rename(partial, tarball)
            # How long the one-off costs, for the record (CI pays it once per machine).
            info = {"mirror": uri, "suite": suite, "debootstrap_seconds": round(took, 1)}
            (CACHE / f"{tarball.name}.json").write_text(json.dumps(info) + "\n")
        finally:
            _unmount_under(work)
            shutil.rmtree(work, ignore_errors=True)
    return tarball


@pytest.fixture(scope="session")
def debian_base() -> Path:
    return debian_tarball()


def test_apt_get_install_works_with_default_flags(
    builder: Builder, tmp_path: Path, debian_base: Path
) -> None:
    builder("import", debian_base, "debian:base")
    recipe = (
        "FROM debian:base\n"
        "RUN apt-get update && apt-get install -y jq\n"
        "RUN jq --version > /version\n"
    )
    context = make_context(tmp_path, recipe)
    builder("build", "-t", "jq", context, timeout=900)
    version = builder("run", "--rm", "jq", "cat", "/version").stdout
    assert version.startswith("jq-"), version
    assert builder("run", "--rm", "jq", "jq", "-n", "1+1").stdout == "2\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\n"
            "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
            "Suites: trixie-security\n",
            ("http://mirror.example/debian", "trixie"),
        ),
        (
            "# deb http://old.example/debian bookworm main\n"
            "deb [arch=amd64] http://mirror.example/debian/ bookworm main\n",
            ("http://mirror.example/debian/", "bookworm"),
        ),
    ],
)
def test_the_mirror_comes_from_apts_sources(
    text: str, expected: tuple[str, str], tmp_path: Path
) -> None:
    suffix = ".sources" if text.startswith("Types") else ".list"
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / f"sources.list.d/debian{suffix}").write_text(text)
    assert apt_mirror(tmp_path) == expected
