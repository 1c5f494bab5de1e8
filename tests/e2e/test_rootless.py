"""Rootless: build and run as a non-root user, in the user's own store.

The session makes two users: one with a subordinate id range (/etc/subuid, /etc/subgid),
whose images keep every owner, and one without, who gets a single-id map and a note. They
run the CLI from a copy of this tree and its dependencies that they can read, with the
system's Python of the same version (this venv's interpreter may live where they cannot).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.sandbox.hosts import host_address
from tests.e2e.support import Builder, Result, make_context
from tests.sandbox.test_network import GREETING, tcp_server

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
DEPENDENCIES = ("lark", "zstandard", "tqdm", "click", "urllib3")
WITH_RANGE, WITHOUT_RANGE = "builder-rootless", "builder-norange"

RECIPE = """\
FROM busybox
RUN echo hi > /x && chmod 4755 /x && mkdir -p /srv/u && touch /srv/u/f \\
    && chown -R 1000:1000 /srv/u && rm -rf /tmp
COPY --chown=7:7 f /f
"""


@dataclass
class Kit:
    """A world-readable copy of builder and its dependencies, and a base image tarball."""

    path: Path
    base: Path

    def builder(
        self, user: str, *args: str | Path, check: bool = True, env: dict[str, str] | None = None
    ) -> Result:
        home = pwd.getpwnam(user).pw_dir
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        proc = subprocess.run(
            ["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"USER={user}",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"PYTHONPATH={self.path}", *extra,
             str(SYSTEM_PYTHON), "-m", "builder", *map(str, args)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
            cwd="/",
        )  # fmt: skip
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"builder {args} as {user} exited {proc.returncode}:\n{proc.stderr}"
            )
        return result


def _version_of(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="session")
def kit(busybox_rootfs: Path) -> Iterator[Kit]:
    if os.geteuid() != 0:
        pytest.skip("making test users needs root")
    if not SYSTEM_PYTHON.exists() or _version_of(SYSTEM_PYTHON) != str(sys.version_info[:2]):
        pytest.skip(f"{SYSTEM_PYTHON} is not Python {sys.version_info[:2]}")
    for user in (WITH_RANGE, WITHOUT_RANGE):
        _remake_user(user)
    _ensure_range(WITH_RANGE, 300000)
    path = Path(tempfile.mkdtemp(prefix="builder-rootless-", dir="/tmp"))
    try:
        shutil.copytree(REPO / "builder", path / "builder", symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for name in DEPENDENCIES:
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.origin is not None, name
            shutil.copytree(Path(spec.origin).parent, path / name,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        base = path / "busybox.tar"
        with tarfile.open(base, "w") as tar:  # owned by root, as any distribution's rootfs
            tar.add(busybox_rootfs, ".", filter=_as_root)
        for dirpath, dirnames, filenames in os.walk(path):
            for name in [*dirnames, *filenames]:
                os.chmod(os.path.join(dirpath, name), 0o755, follow_symlinks=False)
        path.chmod(0o755)
        yield Kit(path, base)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        for user in (WITH_RANGE, WITHOUT_RANGE):
            subprocess.run(["userdel", "-r", user], capture_output=True, check=False)


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _remake_user(user: str) -> None:
    subprocess.run(["userdel", "-r", user], capture_output=True, check=False)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, capture_output=True)
    for path in ("/etc/subuid", "/etc/subgid"):  # useradd may have given a range: none yet
        lines = Path(path).read_text().splitlines(keepends=True) if Path(path).exists() else []
        Path(path).write_text("".join(x for x in lines if not x.startswith(f"{user}:")))


def _ensure_range(user: str, start: int) -> None:
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{user}:{start}:65536\n")


@contextlib.contextmanager
def _tun_mode(mode: int, device: str = "/dev/net/tun") -> Iterator[None]:
    """The device (/dev/net/tun) at MODE for the test; the mode it had is written back."""
    tun = Path(device)
    if not tun.exists():
        pytest.skip(f"no {device}")
    before = stat.S_IMODE(tun.stat().st_mode)
    tun.chmod(mode)
    try:
        yield
    finally:
        tun.chmod(before)


@pytest.fixture
def tun_open_to_all() -> Iterator[None]:
    """As Debian ships it (0666: slirp4netns, as a user, opens it); this machine class
    keeps it 0600."""
    with _tun_mode(0o666):
        yield


@pytest.fixture
def tun_for_root_only() -> Iterator[None]:
    with _tun_mode(0o600):
        yield


@pytest.fixture
def fuse_open_to_all() -> Iterator[None]:
    """/dev/fuse as Debian ships it (0666); this machine class keeps it 0600."""
    if shutil.which("fuse-overlayfs") is None:
        pytest.skip("needs fuse-overlayfs")
    with _tun_mode(0o666, "/dev/fuse"):
        yield


@pytest.fixture
def fuse_for_root_only() -> Iterator[None]:
    with _tun_mode(0o600, "/dev/fuse"):
        yield


def _context(kit: Kit, recipe: str, files: dict[str, str] | None = None) -> Path:
    """A context the test users can read (pytest's temp dirs are root's alone)."""
    base = Path(tempfile.mkdtemp(dir=kit.path))
    context = make_context(base, recipe, files)
    for path in (base, context, *context.iterdir()):
        path.chmod(0o755)
    return context


def _diff_ids(result: Result) -> list[str]:
    import json

    [shown] = json.loads(result.stdout)
    return list(shown["Config"]["rootfs"]["diff_ids"])


def test_a_user_with_a_subordinate_range_builds_and_runs_with_owners_kept(
    kit: Kit, builder: Builder, tmp_path: Path
) -> None:
    context = _context(kit, RECIPE, {"f": "f\n"})
    user = WITH_RANGE
    kit.builder(user, "import", kit.base, "busybox:latest")
    epoch = ("--source-date-epoch", "1700000000")
    # --network none: slirp4netns needs /dev/net/tun, which Debian ships 0666 but this
    # machine class keeps 0600 (root only); the default network has a test of its own.
    kit.builder(user, "build", "--network", "none", "-q", *epoch, "-t", "app", context)
    shown = kit.builder(
        user, "run", "--rm", "--network", "none", "app", "sh", "-c", "ls -ln /x /f /srv/u; cat /x"
    )
    lines = shown.stdout.split("\n")
    assert any(x.startswith("-rwsr-xr-x") and x.endswith("/x") for x in lines), shown.stdout
    assert any(" 7        7 " in x and x.endswith("/f") for x in lines), shown.stdout
    assert any(" 1000     1000 " in x and x.endswith(" f") for x in lines), shown.stdout
    assert lines[-2] == "hi"
    # The user's own store, and the same layers as root builds from the same recipe.
    home = Path(pwd.getpwnam(user).pw_dir)
    assert (home / ".local/share/builder/layout/index.json").exists()
    ours = _diff_ids(kit.builder(user, "inspect", "app"))
    root_base = tmp_path / "root-store"
    as_root = Builder(root_base)
    as_root("import", kit.base, "busybox:latest")
    as_root("build", "-q", *epoch, "-t", "app", context)
    assert ours == _diff_ids(as_root("inspect", "app"))
    # Nothing in the user's store belongs to an id outside the user's own and its range.
    uid = pwd.getpwnam(user).pw_uid
    for dirpath, dirnames, filenames in os.walk(home / ".local/share/builder"):
        for name in [*dirnames, *filenames]:
            owner = os.lstat(os.path.join(dirpath, name)).st_uid
            assert owner == uid or 300000 <= owner < 300000 + 65536, (dirpath, name, owner)


def test_a_user_without_a_range_gets_a_single_id_map_and_a_note(kit: Kit, tmp_path: Path) -> None:
    user = WITHOUT_RANGE
    context = _context(kit, "FROM busybox\nRUN echo made > /made\n")
    imported = kit.builder(user, "import", kit.base, "busybox:latest")
    assert "only your own id is mapped" in imported.stderr
    kit.builder(user, "build", "--network", "none", "-q", "-t", "app", context)
    made = kit.builder(user, "run", "--rm", "--network", "none", "app", "cat", "/made")
    assert made.stdout == "made\n"
    # A file owned by another id cannot be written: one clear error, exit 5 (the step).
    chown = _context(kit, "FROM busybox\nRUN touch /f && chown 1000 /f\n")
    failed = kit.builder(user, "build", "--network", "none", chown, check=False)
    assert failed.status == 5, failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_user_forced_to_the_copying_snapshotter_builds_the_same_layers_and_runs(
    kit: Kit, tmp_path: Path
) -> None:
    """As a user where overlay would not mount: the copy, in the user's namespace, keeps
    owners and whiteouts and makes the layers root's overlayfs makes."""
    user = WITH_RANGE
    recipe = RECIPE + "RUN rm /etc/group && rm -rf /srv/u && mkdir /srv/u && echo n > /srv/u/n\n"
    context = _context(kit, recipe, {"f": "f\n"})
    copy = {"BUILDER_SNAPSHOTTER": "native"}
    kit.builder(user, "import", kit.base, "busybox:latest")
    epoch = ("--source-date-epoch", "1700000000")
    kit.builder(user, "build", "--no-cache", "--network", "none", "-q", *epoch, "-t", "cp",
                context, env=copy)  # fmt: skip
    ran = kit.builder(user, "run", "--rm", "--network", "none", "cp", "sh", "-c",
                      "ls -ln /x /f; ls /srv/u; test -e /etc/group || echo no-group",
                      env=copy)  # fmt: skip
    assert "-rwsr-xr-x" in ran.stdout and " 7        7 " in ran.stdout
    assert ran.stdout.endswith("n\nno-group\n"), ran.stdout
    as_root = Builder(tmp_path / "root-store")
    as_root("import", kit.base, "busybox:latest")
    as_root("build", "-q", *epoch, "-t", "cp", context, env={"BUILDER_SNAPSHOTTER": "overlayfs"})
    assert _diff_ids(kit.builder(user, "inspect", "cp")) == _diff_ids(as_root("inspect", "cp"))
    # By default the probe finds that overlay mounts here, in the user's namespace.
    record = Path(pwd.getpwnam(user).pw_dir) / ".local/share/builder/snapshotter.json"
    record.unlink(missing_ok=True)  # an earlier test's build may have probed already
    kit.builder(user, "build", "--network", "none", "-q", "-t", "auto", context)
    import json

    assert json.loads(record.read_text())["snapshotter"] == "overlayfs"
    assert json.loads(record.read_text())["key"]["user_namespace"] is True


def test_a_users_run_steps_and_containers_get_a_private_network_with_outbound_reach(
    kit: Kit, tun_open_to_all: None
) -> None:
    """docker's default network, rootless: slirp4netns joins the user's namespaces; the
    host's address (not its loopback) is reached; the host's 127.0.0.1 is not, neither
    through the helper's gateway nor otherwise."""
    user = WITH_RANGE
    kit.builder(user, "import", kit.base, "busybox:latest")
    host = host_address()
    with tcp_server(host) as (port, served), tcp_server("127.0.0.1") as (local, local_served):
        probe = (
            f"ls /sys/class/net | xargs; nc -w 3 {host} {port};"
            f" nc -w 3 10.0.2.2 {local}; nc -w 3 {host} {local}; true"
        )
        context = _context(kit, f"FROM busybox\nRUN ({probe}) > /got\n")
        kit.builder(user, "build", "-q", "-t", "net", context)
        got = kit.builder(user, "run", "--rm", "--network", "none", "net", "cat", "/got")
        assert got.stdout == f"eth0 lo\n{GREETING}\n" and served == [host], got.stdout
        ran = kit.builder(user, "run", "--rm", "net", "sh", "-c", probe)
        assert ran.stdout == f"eth0 lo\n{GREETING}\n" and served == [host, host], ran.stdout
        assert local_served == []


def test_without_access_to_tun_the_error_says_what_to_do(kit: Kit, tun_for_root_only: None) -> None:
    user = WITH_RANGE
    kit.builder(user, "import", kit.base, "busybox:latest")
    failed = kit.builder(user, "run", "--rm", "busybox:latest", "true", check=False)
    assert failed.status == 125 and "Traceback" not in failed.stderr
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "/dev/net/tun must be open to all users" in line
    assert "--network none" in line


def test_a_user_served_by_fuse_overlayfs_builds_the_same_layers_and_runs(
    kit: Kit, tmp_path: Path, fuse_open_to_all: None
) -> None:
    """fuse-overlayfs in the user's namespace (its `user.fuseoverlayfs.*` xattrs): its upper
    dirs put in overlay form make the layers root's overlayfs makes."""
    user = WITH_RANGE
    recipe = RECIPE + "RUN rm /etc/group && rm -rf /srv/u && mkdir /srv/u && echo n > /srv/u/n\n"
    context = _context(kit, recipe, {"f": "f\n"})
    fuse = {"BUILDER_SNAPSHOTTER": "fuse-overlayfs"}
    kit.builder(user, "import", kit.base, "busybox:latest")
    epoch = ("--source-date-epoch", "1700000000")
    kit.builder(user, "build", "--no-cache", "--network", "none", "-q", *epoch, "-t", "fu",
                context, env=fuse)  # fmt: skip
    ran = kit.builder(user, "run", "--rm", "--network", "none", "fu", "sh", "-c",
                      "ls /srv/u; test -e /etc/group || echo no-group", env=fuse)  # fmt: skip
    assert ran.stdout == "n\nno-group\n", ran.stdout
    as_root = Builder(tmp_path / "root-store")
    as_root("import", kit.base, "busybox:latest")
    as_root("build", "-q", *epoch, "-t", "fu", context, env={"BUILDER_SNAPSHOTTER": "overlayfs"})
    assert _diff_ids(kit.builder(user, "inspect", "fu")) == _diff_ids(as_root("inspect", "fu"))


def test_without_access_to_fuse_the_error_says_what_to_do(
    kit: Kit, fuse_for_root_only: None
) -> None:
    user = WITH_RANGE
    kit.builder(user, "import", kit.base, "busybox:latest")
    failed = kit.builder(user, "run", "--rm", "--network", "none", "busybox:latest", "true",
                         env={"BUILDER_SNAPSHOTTER": "fuse-overlayfs"}, check=False)  # fmt: skip
    assert failed.status == 125 and "Traceback" not in failed.stderr
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "/dev/fuse must be open to all users" in line
