"""One store for the whole behaviour suite, holding a busybox:latest like Docker Hub's.

Docker Hub's busybox has its users and groups (daemon:1, bin:2, … nobody:65534), every applet
in /bin (BuildKit's tests run `/bin/awk`), and a config of `PATH` and `CMD ["sh"]`; BuildKit's
tests lean on all of these, so our base has them too. Every
case tags its own image name in this one store, so the base is imported once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.behaviour.case import Case
from tests.behaviour.harness import check
from tests.e2e.conftest import busybox_rootfs  # noqa: F401  (the session fixture, reused)
from tests.e2e.support import Builder

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
www-data:x:33:
operator:x:37:
users:x:100:
staff:x:50:
nobody:x:65534:
"""
BASE_RECIPE = (
    "FROM busybox:raw\n"
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    'CMD ["sh"]\n'
)


@pytest.fixture(scope="session")
def behaviour_store(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Builder:  # noqa: F811
    work = tmp_path_factory.mktemp("behaviour-base")
    rootfs = work / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    for folder in ("sbin", "usr/bin", "usr/sbin"):
        for applet in (rootfs / folder).iterdir():
            if not (rootfs / "bin" / applet.name).is_symlink():
                (rootfs / "bin" / applet.name).symlink_to("busybox")
    builder = Builder(work / "store")
    builder("import", "--compression", "gzip", rootfs, "busybox:raw")
    (work / "base").mkdir()
    (work / "base" / "Dockerfile").write_text(BASE_RECIPE)
    builder("build", "-q", "-t", "busybox:latest", work / "base")
    return builder


@pytest.fixture
def behave(behaviour_store: Builder, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Check a case against the shared store."""

    def run(case: Case) -> None:
        check(behaviour_store, tmp_path, case)

    return run
