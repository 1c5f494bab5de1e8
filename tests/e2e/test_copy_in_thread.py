"""Our in-root writers (COPY, ADD, COPY --from, WORKDIR) run in a thread whose root is the
image's (sandbox/inthread), not in a sandbox: the same layers, and nothing written outside
the image's root, whatever its symlinks say."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from builder.engine.engine import build
from builder.engine.executor import SandboxExecutor
from builder.engine.options import BuildOptions
from builder.store import Store
from tests.e2e.support import Builder, make_context

EPOCH = 1_700_000_000


def _recipe(host: Path) -> str:
    # A hostile base: links to the host's root, up past the root, and to a host path; a
    # deleted dir (a whiteout) and one made again opaque; then every writer of ours
    # writes through them.
    return f"""FROM busybox:latest AS src
RUN mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && ln -s a /data/l

FROM busybox:latest
RUN ln -s / /evil && ln -s ../../../../../.. /up && mkdir -p {host}/abs \\
 && ln -s {host}/abs /abs && mkdir -p /gone/x /opaque/old && rm -rf /gone \\
 && rm -rf /opaque && mkdir /opaque && ln -s /nowhere/file /dangling
COPY --chown=1:2 --chmod=640 f /evil{host}/evil/x
COPY f /up{host}/up/y
COPY f /abs/z
COPY f /gone/x/f
COPY dir/ /opaque/
COPY f /dangling
COPY --from=src /data /fromstage/
COPY --from=src /data/l /one-file
ADD archive.tar /unpacked/
WORKDIR /abs/work
"""


def _archive() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("t/one", b"1\n"), ("t/two", b"22\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), EPOCH
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _build(root: Path, context: Path, in_thread: bool, tag: str) -> str:
    store = Store.open(root)
    executor = SandboxExecutor(
        store.tmp_dir, discard_dir=store.scratch.discard, in_thread=in_thread
    )
    options = BuildOptions(
        context=context, tags=(tag,), no_cache=True, source_date_epoch=EPOCH, network="none"
    )
    try:
        return build(options, store, executor=executor).image_id
    finally:
        executor.close()


def test_the_writers_in_a_thread_make_the_sandboxs_layers_inside_the_root(
    builder: Builder, tmp_path: Path
) -> None:
    host = tmp_path / "host"  # where each hostile link leads on the host: nothing lands there
    host.mkdir()
    context = make_context(tmp_path, _recipe(host), {"f": "content\n", "dir/c": "c\n"})
    (context / "archive.tar").write_bytes(_archive())
    os.chmod(context / "archive.tar", 0o644)

    in_thread = _build(builder.root, context, True, "t:1")
    in_sandbox = _build(builder.root, context, False, "s:1")

    assert in_thread == in_sandbox  # every layer byte for byte, through the image ID
    assert list(host.iterdir()) == []
    shown = builder(
        "run", "--rm", "t:1", "sh", "-c",
        f"cd {host}; cat evil/x up/y abs/z /gone/x/f /nowhere/file /fromstage/a /fromstage/sub/b"
        " /one-file /unpacked/t/two; ls /opaque; stat -c '%u:%g %a' evil/x; cd /abs/work; pwd -P",
    ).stdout.split()  # fmt: skip
    assert shown == [
        *["content"] * 5, "one", "two", "one", "22", "c", "1:2", "640", f"{host}/abs/work",
    ]  # fmt: skip


def test_a_writers_error_reaches_the_steps_output(builder: Builder, tmp_path: Path) -> None:
    """A user's mistake in the writer (a missing source in a stage) is one line on the
    step's output, as from the sandbox, and the build fails with it."""
    recipe = "FROM busybox:latest AS src\nFROM busybox:latest\nCOPY --from=src /missing /x\n"
    context = make_context(tmp_path, recipe)
    result = builder("build", "-t", "e:1", context, check=False)
    assert result.status != 0
    assert "/missing" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("mode", ["thread", "sandbox"])
def test_the_writers_thread_leaves_no_mount_behind(
    builder: Builder, tmp_path: Path, mode: str
) -> None:
    context = make_context(tmp_path, "FROM busybox:latest\nCOPY f /f\n", {"f": "x\n"})
    before = Path("/proc/self/mountinfo").read_text().count("overlay")
    _build(builder.root, context, mode == "thread", "m:1")
    assert Path("/proc/self/mountinfo").read_text().count("overlay") == before


def test_copy_onto_the_sandboxs_mount_points_lands_in_the_layer(
    builder: Builder, tmp_path: Path
) -> None:
    """docker's COPY writes /etc/hosts, /proc/... and /dev/... into the image: BuildKit's
    file operations run on the snapshot, where nothing is mounted. (In the sandbox,
    /etc/hosts was its own bind mount: the copy failed with EBUSY.)"""
    recipe = "FROM busybox:latest\nCOPY f /etc/hosts\nCOPY f /proc/x\nCOPY f /dev/y\n"
    context = make_context(tmp_path, recipe, {"f": "10.9.9.9 mine\n"})
    builder("build", "-t", "h:1", context)
    builder("export", "h:1", "-o", tmp_path / "h.tar")
    with tarfile.open(tmp_path / "h.tar") as tar:
        for name in ("etc/hosts", "proc/x", "dev/y"):
            member = tar.extractfile(name)
            assert member is not None and member.read() == b"10.9.9.9 mine\n", name


def test_where_the_thread_cannot_unshare_the_sandbox_writes(
    builder: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seccomp profile of a container we run in may refuse unshare (a fault this machine
    cannot cause for us, hence the stand-in): the writers fall back to the sandbox, and
    the image is the one the thread would have made."""
    from builder.sandbox import inthread
    from builder.sandbox.syscalls import SyscallError

    context = make_context(
        tmp_path, "FROM busybox:latest\nCOPY f /f\nWORKDIR /w\nCOPY f /w/g\n", {"f": "x\n"}
    )
    made = _build(builder.root, context, True, "ok:1")
    refused: list[int] = []

    def refuse(flags: int) -> None:
        refused.append(flags)
        raise SyscallError(f"unshare({flags:#x})", 1)

    monkeypatch.setattr(inthread, "unshare", refuse)
    assert _build(builder.root, context, True, "fallback:1") == made
    assert len(refused) == 1  # asked once: the executor then goes to the sandbox
