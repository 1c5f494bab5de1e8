"""The snapshotters (issue 8, rootless): overlayfs, and the copying one ("native") used
where overlay cannot be mounted, make the same layers: the same image ID, built apart.

The recipe touches every kind of change a layer records: files added, changed in place,
chmodded and chowned, removed from a lower layer (whiteouts), a dir removed and made again
(opaque), a file replaced by a dir, symlinks, hard links (new ones, and one to a lower
file), a setuid bit; a later RUN sees lower hard links
as links (their link counts go into the layer).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from tests.e2e.runtime_support import (
    containers_of,
    leftovers,
    mounts_with,
    popen,
    processes_with,
    wait_gone,
)
from tests.e2e.support import Builder, make_context

EPOCH = "1700000000"
IMAGE = "busybox:latest"

RECIPE = """\
FROM busybox:latest
RUN mkdir -p /d/keep /d/gone /r/old && echo a > /d/keep/a && echo b > /d/gone/b \\
 && echo old > /r/old/x && echo f > /f && echo lower > /hl1 && ln /hl1 /hl2 \\
 && echo edit > /edit && echo mode > /mode && echo s > /asdir
RUN echo more >> /edit && chmod 600 /mode && chown 5:6 /f && rm /etc/group \\
 && rm -r /d/gone && rm -rf /r && mkdir -p /r/new && echo n > /r/new/y \\
 && rm /asdir && mkdir /asdir && ln -s ../f /d/keep/link && ln /f /f2 \\
 && cp /bin/busybox /ping && chmod 4755 /ping && touch /d/keep/a
COPY extra /extra
RUN cat /hl2 /f2 /edit > /listing && stat -c '%n %h %a %u' /hl1 /hl2 /f /f2 >> /listing
"""


def _layers(store: Builder, image: str) -> list[list[tuple[object, ...]]]:
    (info,) = json.loads(store("inspect", image).stdout)
    out = []
    for layer in info["Manifest"]["layers"][1:]:  # the base's is not ours
        blob = store.root / "layout" / "blobs" / "sha256" / layer["digest"].partition(":")[2]
        plain = zstandard.ZstdDecompressor().decompressobj().decompress(blob.read_bytes())
        with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
            out.append([(m.name, m.type.decode(), m.mode, m.uid, m.gid, m.linkname) for m in tar])
    return out


def _member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> tuple[object, ...]:
    data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
    xattrs = sorted(m.pax_headers.items())
    return (m.name, m.type.decode(), m.mode, m.uid, m.gid, m.linkname, m.mtime, xattrs, data)


def _build(store: Builder, context: Path, snapshotter: str) -> str:
    env = {"BUILDER_SNAPSHOTTER": snapshotter, "SOURCE_DATE_EPOCH": EPOCH}
    return store("build", "-q", "--no-cache", "-t", "s", context, env=env).stdout.strip()


def test_overlay_fuse_and_copy_make_the_same_layers(tmp_path: Path, busybox_store: Path) -> None:
    context = make_context(tmp_path, RECIPE, {"extra": "x\n"})
    ids, layers = {}, {}
    for name in ("overlayfs", "fuse-overlayfs", "native"):
        store = Builder(tmp_path / name)
        shutil.copytree(busybox_store, store.root, symlinks=True)
        ids[name] = _build(store, context, name)
        layers[name] = _layers(store, "s")
        assert leftovers(store, "fuse-overlayfs") == {"processes": [], "mounts": [], "tmp": []}
    assert layers["native"] == layers["overlayfs"]
    assert layers["fuse-overlayfs"] == layers["overlayfs"]
    assert ids["native"] == ids["overlayfs"] == ids["fuse-overlayfs"]
    second = {m[0]: m for m in layers["native"][1]}
    # What the layer holds is what overlayfs holds: the test can tell the kinds apart.
    assert {"etc/.wh.group", "d/.wh.gone", "r/.wh..wh..opq", "asdir/.wh..wh..opq"} <= set(second)
    assert second["f2"][1] == tarfile.LNKTYPE.decode() and second["f2"][5] == "f"
    assert "hl1" not in second and "hl2" not in second  # only read
    assert second["ping"][2] & 0o4000 and second["mode"][2] == 0o600
    assert second["f"][3:5] == (5, 6)


def test_auto_falls_back_to_the_copy_where_overlay_cannot_mount(
    tmp_path: Path, busybox_store: Path
) -> None:
    """A store on an overlayfs: overlayfs refuses one as an upper dir, for real."""
    base = tmp_path / "ovl"
    for d in ("lower", "upper", "work", "merged"):
        (base / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work",
                    str(base / "merged")], check=True)  # fmt: skip
    try:
        store = Builder(base / "merged" / "store")
        shutil.copytree(busybox_store, store.root, symlinks=True)
        context = make_context(
            tmp_path, "FROM busybox:latest\nRUN echo hi > /hi && rm /etc/group\n"
        )
        store("build", "-t", "fb", context)
        record = json.loads((store.root / "snapshotter.json").read_text())
        assert record["snapshotter"] == "native"
        assert store("run", "--rm", "fb", "cat", "/hi").stdout == "hi\n"
        assert store("run", "--rm", "fb", "ls", "/etc/group", check=False).status == 1
        # Remembered: a second run does not probe again (the record is what it reads).
        (store.root / "snapshotter.json").write_text(
            json.dumps({**record, "snapshotter": "overlayfs"})
        )
        failed = store("build", "--no-cache", "-t", "fb", context, check=False)
        assert failed.status != 0  # overlayfs, as remembered, cannot mount here
        forced = store("build", "--no-cache", "-t", "fb", context,
                       env={"BUILDER_SNAPSHOTTER": "copy"})  # fmt: skip
        assert forced.status == 0
        # fuse-overlayfs cannot read the xattr whiteouts an overlayfs store's layers hold.
        fuse = store("build", "-q", "--no-cache", "-t", "fb", context, check=False,
                     env={"BUILDER_SNAPSHOTTER": "fuse-overlayfs"})  # fmt: skip
        assert fuse.status != 0 and "refuses overlay whiteouts" in fuse.stderr
        assert len(fuse.stderr.strip().splitlines()) == 1, fuse.stderr
    finally:
        subprocess.run(["umount", "-l", str(base / "merged")], check=False)


ROOT_FSTYPE = "sed -n 's|^[^ ]* [^ ]* [^ ]* [^ ]* / .* - \\([^ ]*\\) .*|\\1|p' /proc/self/mountinfo"


def test_auto_picks_fuse_overlayfs_where_overlay_does_not_mount(builder: Builder) -> None:
    """The probe's answer (tested above on a real overlayfs store) is what `auto` reads:
    recorded as "no overlay", it serves the root with fuse-overlayfs where the program is
    found, else copies."""
    record = {
        "key": {"kernel": os.uname().release, "user_namespace": False},
        "snapshotter": "native",
    }
    (builder.root / "snapshotter.json").write_text(json.dumps(record))
    auto = {"BUILDER_SNAPSHOTTER": "auto"}
    fstype = ("run", "--rm", "--network", "none", IMAGE, "sh", "-c", ROOT_FSTYPE)
    assert builder(*fstype, env=auto).stdout == "fuse.fuse-overlayfs\n"
    no_fuse = {**auto, "PATH": "/nonexistent"}  # fuse-overlayfs is not found
    out = builder(*fstype, env=no_fuse).stdout
    assert out.strip() and out != "fuse.fuse-overlayfs\n"  # a bind of the copy
    assert leftovers(builder, "fuse-overlayfs") == {"processes": [], "mounts": [], "tmp": []}


@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        (
            {"BUILDER_SNAPSHOTTER": "zfs"},
            None,
            "error: $BUILDER_SNAPSHOTTER: unknown snapshotter 'zfs'",
        ),
        (
            {},
            '[build]\nsnapshotter = "btrfs"\n',
            "[build] snapshotter: unknown snapshotter 'btrfs'",
        ),
        ({}, "[build]\nsnapshotter = 1\n", "[build] snapshotter must be a string"),
    ],
)
def test_a_bad_snapshotter_setting_is_one_error(
    builder: Builder, tmp_path: Path, env: dict[str, str], config: str | None, message: str
) -> None:
    if config is not None:
        path = tmp_path / "config.toml"
        path.write_text(config)
        env = {**env, "BUILDER_CONFIG": str(path)}
    context = make_context(tmp_path, "FROM busybox:latest\nRUN true\n")
    for args in (["build", context], ["run", "--rm", "busybox:latest", "true"]):
        result = builder(*args, env=env, check=False)
        assert result.status in (2, 125) and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("snapshotter", ["native", "fuse-overlayfs"])
def test_copy_and_fuse_snapshotters_run_containers(builder: Builder, snapshotter: str) -> None:
    env = {"BUILDER_SNAPSHOTTER": snapshotter}
    out = builder("run", "--name", "snap", "busybox:latest", "sh", "-c",
                  "echo hi > /new && rm /etc/group && mkdir /dir && rm -r /usr"
                  " && mkdir /usr && cat /new", env=env)  # fmt: skip
    assert out.stdout == "hi\n"
    (cid,) = os.listdir(builder.root / "containers")
    upper = builder.root / "containers" / cid / "upper"
    assert (upper / "new").read_text() == "hi\n"
    assert os.stat(upper / "etc" / "group", follow_symlinks=False).st_rdev == 0  # a whiteout
    # In overlayfs's form: a new dir plain, one made where one was opaque, no markers.
    assert os.listxattr(upper / "dir") == [] and os.listdir(upper / "dir") == []
    assert os.listxattr(upper / "usr") == ["trusted.overlay.opaque"]
    assert os.listdir(upper / "usr") == []
    assert not (builder.root / "containers" / cid / "work" / "merged").exists()
    assert wait_gone(str(builder.root)) == [] and mounts_with(str(builder.root)) == []


@pytest.mark.parametrize(
    ("snapshotter", "delay"),
    [
        ("native", 0.3),
        ("native", 0.6),
        ("native", 1.0),
        ("fuse-overlayfs", 0.2),
        ("fuse-overlayfs", 1.0),
    ],
)
def test_killing_the_cli_during_a_copied_or_fuse_run_or_build_leaves_nothing(
    builder: Builder, tmp_path: Path, snapshotter: str, delay: float
) -> None:
    """Killed while copying, running or diffing: no process (a fuse-overlayfs daemon names
    the store in its command line), no mount; the copies are in the store's scratch (swept
    by the next command) or the container's dir (`rm`)."""
    token = f"27.{os.getpid()}"  # this session's own: other sessions run this test too
    context = make_context(tmp_path, f"FROM busybox:latest\nRUN sleep {token}\n")
    env = {**os.environ, "BUILDER_SNAPSHOTTER": snapshotter}
    for args in (["run", IMAGE, "sleep", token], ["build", "--no-cache", str(context)]):
        proc = popen(builder, *args, env=env)
        time.sleep(delay)
        if snapshotter == "fuse-overlayfs" and delay >= 1.0:  # killed while it serves
            assert processes_with(f"workdir={builder.root}"), "no fuse-overlayfs daemon"
        proc.kill()
        proc.communicate()
        assert wait_gone(str(builder.root), token) == [] and mounts_with(str(builder.root)) == []
    builder("run", "--rm", IMAGE, "true", env={"BUILDER_SNAPSHOTTER": snapshotter})  # sweeps
    for cid in containers_of(builder):
        builder("rm", cid)
    assert containers_of(builder) == [] and leftovers(builder, token) == {
        "processes": [],
        "mounts": [],
        "tmp": [],
    }
