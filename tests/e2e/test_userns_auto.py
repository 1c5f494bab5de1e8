"""`--userns=auto` on build and run: container root is an unprivileged host range leased
from the user `containers`' subordinate ranges, and layers come out byte for byte as they
do with the default identity map.

The session adds a range for `containers` to /etc/subuid and /etc/subgid when there is none
(tests/subids.py), as the rootless tests add their users' ranges.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.sandbox import subids
from tests.e2e.runtime_support import kill_leftovers, leftovers, popen
from tests.e2e.support import Builder, make_context
from tests.subids import ensure_range

# Every kind of change a layer holds: files of root and of 1000:1000, a setuid file, a
# chown'd dir, a whiteout of a lower file; in a second RUN a copy-up of the first one's
# 1000-owned file and an opaque dir (a lower dir removed and made again).
RECIPE = """\
FROM busybox
RUN echo root > /r && mkdir -p /home/u/sub && echo u > /home/u/f \\
    && chown -R 1000:1000 /home/u && echo s > /s && chmod 4755 /s \\
    && mkdir /d && chown 7:8 /d && rm /bin/ls && mkdir -p /o/in && touch /o/a /o/in/b
RUN echo more >> /home/u/f && chmod 2755 /home/u/sub && ln /r /hard && ln -s /r /sym \\
    && rm -rf /o && mkdir /o && echo new > /o/new
"""
EPOCH = "1700000000"  # fixed times: the image IDs can be compared too


@pytest.fixture(autouse=True)
def _range_and_cleanup(builder: Builder) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("--userns=auto needs root")
    ensure_range()
    yield
    kill_leftovers(builder)


def _build(builder: Builder, tmp_path: Path, tag: str, *flags: str) -> dict[str, object]:
    context = make_context(tmp_path / tag, RECIPE)
    builder("build", "--no-cache", "--network", "none", "--source-date-epoch", EPOCH,
            "-t", tag, *flags, context)  # fmt: skip
    [shown] = json.loads(builder("inspect", tag).stdout)
    return dict(shown)


def _layer_members(builder: Builder, diff_id: str) -> dict[str, tuple[int, int, int, int]]:
    """name -> (uid, gid, mode, type) of a layer's tar, read from the store's blob."""
    blobs = builder.root / "layout" / "blobs" / "sha256"
    for blob in blobs.iterdir():  # the blob whose uncompressed digest is diff_id
        data = blob.read_bytes()
        raw = _decompressed(data)
        if raw is None:
            continue
        if "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id:
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                return {m.name: (m.uid, m.gid, m.mode, ord(m.type)) for m in tar}
    raise AssertionError(f"no blob for {diff_id}")


def _decompressed(data: bytes) -> bytes | None:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return None


def test_layers_are_the_same_with_and_without_userns_auto(builder: Builder, tmp_path: Path) -> None:
    plain = _build(builder, tmp_path, "plain")
    auto = _build(builder, tmp_path, "auto", "--userns=auto")
    plain_ids = plain["Config"]["rootfs"]["diff_ids"]  # type: ignore[index]
    auto_ids = auto["Config"]["rootfs"]["diff_ids"]  # type: ignore[index]
    assert auto_ids == plain_ids
    assert auto["Id"] == plain["Id"]
    # What makes the equality worth something: the RUN layer holds every kind of change,
    # with the image's own ids (not the range's, nor nobody's).
    members = _layer_members(builder, auto_ids[1])
    assert members["home/u/f"][:2] == (1000, 1000)
    assert members["home/u/sub"][:2] == (1000, 1000)
    assert members["d"][:2] == (7, 8)
    assert members["r"][:2] == (0, 0)
    assert members["s"][2] == 0o4755
    assert "bin/.wh.ls" in members
    second = _layer_members(builder, auto_ids[2])
    assert "o/.wh..wh..opq" in second and "o/new" in second
    assert second["home/u/f"][:2] == (1000, 1000)  # copied up from the layer below
    assert second["home/u/sub"][2] == 0o2755


def test_a_run_step_under_userns_auto_is_not_host_root(builder: Builder, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM busybox\nRUN cat /proc/self/uid_map\n")
    shown = builder("build", "--no-cache", "--network", "none", "--progress", "plain",
                    "--userns=auto", context)  # fmt: skip
    bases = {ids.uid for ids in subids.slots()}
    maps = re.findall(r"^\S*\s*0\s+(\d+)\s+(\d+)\s*$", shown.stderr + shown.stdout, re.M)
    assert maps, shown.stderr
    assert all(int(base) in bases and count == "65536" for base, count in maps), maps
    assert subids.leased() == []


def test_root_in_a_userns_auto_container_writes_as_the_range_on_the_host(
    builder: Builder, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # container root is nobody special here: it needs the mode
    script = "touch /out/f && chown 1000:1000 /out/f 2>/dev/null; touch /out/g"
    builder("run", "--rm", "--network", "none", "--userns=auto", "-v", f"{shared}:/out",
            "busybox", "sh", "-c", script)  # fmt: skip
    bases = {ids.uid for ids in subids.slots()}
    owner = shared.joinpath("g").stat()
    assert owner.st_uid in bases and owner.st_uid != 0
    assert shared.joinpath("f").stat().st_uid == owner.st_uid + 1000
    # The same without the flag is host root: the test tells the two apart.
    builder("run", "--rm", "--network", "none", "-v", f"{shared}:/out", "busybox",
            "touch", "/out/h")  # fmt: skip
    assert shared.joinpath("h").stat().st_uid == 0


def test_run_userns_auto_shows_the_image_owners_and_leaves_nothing(
    builder: Builder, tmp_path: Path
) -> None:
    _build(builder, tmp_path, "owned")
    out = builder("run", "--rm", "--network", "none", "--userns=auto", "owned", "sh", "-c",
                  "ls -lnd /home/u/f /r /d && id -u && exit 3", check=False)  # fmt: skip
    assert out.status == 3, out.stderr
    lines = out.stdout.split("\n")
    by_name = {line.split()[-1]: line.split()[2:4] for line in lines if line.startswith(("-", "d"))}
    assert by_name == {"/home/u/f": ["1000", "1000"], "/r": ["0", "0"], "/d": ["7", "8"]}
    assert lines[-2] == "0"
    assert leftovers(builder, str(builder.root)) == {"processes": [], "mounts": [], "tmp": []}
    assert subids.leased() == []


def test_a_killed_cli_leaves_no_range_leased(builder: Builder) -> None:
    token = "h8uns-killed-token"
    proc = popen(builder, "run", "--rm", "--network", "none", "--userns=auto", "busybox",
                 "sh", "-c", f"echo {token}; sleep 60")  # fmt: skip
    with proc:  # (closes its pipes)
        assert proc.stdout is not None
        assert token in proc.stdout.readline().decode()  # running, its range leased
        [ours] = subids.leased()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while ours in subids.leased() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours not in subids.leased()
    assert leftovers(builder, token)["processes"] == []
    assert leftovers(builder, token)["mounts"] == []


@pytest.mark.parametrize("verb", ["run", "build"])
def test_no_range_for_containers_is_one_error_line(
    builder: Builder, tmp_path: Path, verb: str
) -> None:
    # /etc/subuid without a `containers` line, in a mount namespace of the CLI's own: the
    # host's file is never touched.
    empty = tmp_path / "subuid"
    empty.write_text("someone:100000:65536\n")
    context = make_context(tmp_path, "FROM busybox\nRUN true\n")
    args = ("run", "--rm", "--userns=auto", "busybox", "true") if verb == "run" else (
        "build", "--no-cache", "--network", "none", "--userns=auto", str(context))  # fmt: skip
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f'mount --bind "{empty}" /etc/subuid && exec "$@"', "sh",
         sys.executable, "-m", "builder", "--root", str(builder.root), *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no range of 65536 ids for the user containers in /etc/subuid" in errors[0]
    assert done.returncode == (125 if verb == "run" else 8)
    assert leftovers(builder, str(builder.root)) == {"processes": [], "mounts": [], "tmp": []}
    assert subids.leased() == []


def test_a_detached_container_holds_its_range_until_it_ends(builder: Builder) -> None:
    before = set(subids.leased())
    cid = builder("run", "-d", "--network", "none", "--userns=auto", "busybox",
                  "sleep", "60").stdout.strip()  # fmt: skip
    try:
        # The CLI has exited: the detached supervisor holds the lease now.
        [ours] = set(subids.leased()) - before
        builder("stop", "-t", "1", cid)
        assert ours not in subids.leased()
    finally:
        builder("rm", "-f", cid, check=False)
    assert leftovers(builder, str(builder.root)) == {"processes": [], "mounts": [], "tmp": []}
