"""Which snapshotter makes a RUN's (or `builder run`'s) root: overlayfs where it can be
mounted, else fuse-overlayfs where it is installed and /dev/fuse opens, else a copy of the
layers (layer/snapshot.py). All three write the same layers.

The names are BuildKit's (`buildkitd --oci-worker-snapshotter`, buildkitd.toml's
`snapshotter`): `overlayfs`, `fuse-overlayfs`, `native` (the copy), and `auto`; podman's
`overlay` and `vfs` and the plain `copy` are accepted as aliases. It is forced by
$BUILDER_SNAPSHOTTER or the config file's `[build] snapshotter` (the CLI reads both);
`auto` probes once whether this user can mount an overlay of dirs in the store (and remove
a lower file through it), and the answer is kept in the store, keyed by the kernel's
release and whether we are in a user namespace of our own, so the probe's fork is paid
once. As root it is also kept for the host until the next boot (`HOST_DIR`, on /run's
tmpfs), keyed besides by the store's file system (its superblock as mountinfo shows it),
so a fresh store on a file system probed before (a CI job's) pays no probe either. Where
overlay cannot be mounted, whether fuse-overlayfs can serve is asked on every choice (a
PATH lookup and an open): installing or removing it needs no probe again. It needs a store
whose dirs hold char 0/0 whiteouts (not one on an overlayfs): it cannot read the xattr
whiteouts our layers hold there.

fuse-overlayfs's upper dir is not overlayfs's (1.10 marks an opaque dir with a
`.wh..wh..opq` file and a `.wh..opq` whiteout too, and may keep `user.fuseoverlayfs.*`
xattrs): layer/fuse_upper.py turns it into overlayfs's form before the layer is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from builder.errors import SandboxError, UsageError
from builder.sandbox.idmap import in_initial_user_namespace

Snapshotter = Literal["overlayfs", "fuse-overlayfs", "native"]
NAMES: Final[dict[str, Snapshotter | None]] = {
    "auto": None,
    "overlayfs": "overlayfs",
    "overlay": "overlayfs",
    "fuse-overlayfs": "fuse-overlayfs",
    "native": "native",
    "copy": "native",
    "vfs": "native",
}
ENV: Final = "BUILDER_SNAPSHOTTER"
FUSE_OVERLAYFS: Final = "fuse-overlayfs"  # the program, looked up in $PATH
FUSE_DEVICE: Final = "/dev/fuse"
HOST_DIR: Final = Path("/run/builder/snapshotter")  # per boot: /run is a tmpfs


def parse(text: str, where: str) -> Snapshotter | None:
    """A snapshotter's name (None: auto); `where` names the setting in the error."""
    name = text.strip().lower()
    try:
        return NAMES[name]
    except KeyError:
        raise UsageError(
            f"{where}: unknown snapshotter {text!r} (one of: {', '.join(NAMES)})"
        ) from None


def choose(forced: Snapshotter | None, scratch: Callable[[str], Path], record: Path) -> Snapshotter:
    """`forced`, else the remembered or probed answer for this store (`record` keeps it,
    `scratch` makes the probe's dirs)."""
    if forced == "fuse-overlayfs" and not _holds_whiteouts(scratch):
        raise SandboxError(
            "snapshotter fuse-overlayfs: the store's file system refuses overlay whiteouts"
            " (char 0/0 devices; an overlayfs does), so its layers keep them in a form"
            " fuse-overlayfs cannot read; use the native snapshotter"
        )
    if forced is not None:
        return forced
    if _overlay_mounts(scratch, record):
        return "overlayfs"
    return "fuse-overlayfs" if fuse_available() and _holds_whiteouts(scratch) else "native"


def fuse_available() -> bool:
    """Is fuse-overlayfs installed, and may this user open /dev/fuse (root's only, 0600,
    on some hosts)?"""
    import shutil  # only where overlay cannot be mounted: not `run`'s start-up

    if shutil.which(FUSE_OVERLAYFS) is None:
        return False
    try:
        os.close(os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def _holds_whiteouts(scratch: Callable[[str], Path]) -> bool:
    """Can the store's dirs hold overlayfs's whiteouts (char 0/0)? Where they cannot (a
    store on an overlayfs, as in a container), the layer dirs hold the xattr form instead,
    which only the kernel (6.7+) and the copying snapshotter read."""
    probe = scratch("whiteout")
    try:
        os.mknod(probe / "w", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except OSError:
        return False
    finally:
        _remove_probe(probe)
    return True


def _overlay_mounts(scratch: Callable[[str], Path], record: Path) -> bool:
    """The remembered or probed answer: overlayfs ("overlayfs") or not ("native", the name
    the record has always kept for "not")."""
    key: dict[str, object] = {
        "kernel": os.uname().release,
        "user_namespace": not in_initial_user_namespace(),
    }
    known = _recalled(record, key)
    if known is not None:
        return known
    host = _host_record(record.parent, key)
    known = None if host is None else _recalled(*host)
    if known is None:
        probe = scratch("probe")
        try:
            known = _overlay_works(probe)
        finally:
            _remove_probe(probe)
        if host is not None:
            _remember(host[0], {"key": host[1], "snapshotter": _answer(known)})
    _remember(record, {"key": key, "snapshotter": _answer(known)})
    return known


def _answer(overlay: bool) -> str:
    return "overlayfs" if overlay else "native"


def _recalled(record: Path, key: dict[str, object]) -> bool | None:
    """The answer `record` keeps for `key` (None: none, another key's, or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(record.read_text(encoding="utf-8"))
        if isinstance(known, dict) and known.get("key") == key:
            found = NAMES.get(str(known.get("snapshotter")))
            if found is not None:
                return found == "overlayfs"
    return None


def _host_record(store: Path, key: dict[str, object]) -> tuple[Path, dict[str, object]] | None:
    """The host's record for the file system `store` is on, and its key (None: not root,
    or a file system mountinfo does not name, as a btrfs subvolume's device: the store's
    record serves alone)."""
    if os.geteuid() != 0 or key["user_namespace"]:
        return None
    fs = _filesystem(store)
    if fs is None:
        return None
    host_key = {**key, "fs": fs}
    name = hashlib.sha256(json.dumps(host_key, sort_keys=True).encode()).hexdigest()
    return HOST_DIR / f"{name}.json", host_key


def _filesystem(path: Path) -> list[str] | None:
    """The superblock `path` is on as /proc/self/mountinfo shows it: device, type, source
    and super options. What the probe's answer depends on besides the kernel (an overlayfs
    refuses to be an upper dir, a tmpfs without user xattrs differs), and unlike the bare
    device number not reused by the next file system mounted (its options and source
    differ: an overlay's name its dirs)."""
    try:
        st = os.stat(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 2 and fields[2] == device and " - " in line:
            fstype, source, options = [*line.split(" - ", 1)[1].split(" "), "", ""][:3]
            return [device, fstype, source, options]
    return None


def _overlay_works(base: Path) -> bool:
    from builder.sandbox import mounts  # only when probing: `parse` is read on every build
    from builder.sandbox.syscalls import CLONE_NEWNS, MNT_DETACH, umount2, unshare

    lower, upper, work, merged = (base / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "f").write_bytes(b"")
    pid = os.fork()
    if pid == 0:  # a mount namespace of its own, gone with it: nothing to unmount
        code = 1
        try:
            unshare(CLONE_NEWNS)
            mounts.make_private()
            mounts.mount_overlay(str(lower), str(upper), str(work), str(merged))
            os.unlink(merged / "f")  # a whiteout: a rootless overlay must make them too
            (merged / "g").write_bytes(b"")
            umount2(str(merged), MNT_DETACH)
            code = 0
        except BaseException:  # the child must end in _exit whatever happens
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _remove_probe(base: Path) -> None:
    # The probe's work dir holds a root-owned, mode-000 "work" dir: walk it bottom-up.
    for dirpath, dirnames, filenames in os.walk(base, topdown=False):
        for name in filenames:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(dirpath, name))
    with contextlib.suppress(OSError):
        os.rmdir(base)


def _remember(record: Path, value: dict[str, object]) -> None:
    """Best effort (a read-only store just probes again): temp file, rename. No fsync (it
    cost 30 ms of a cold build on ext4): after a crash the record is whole, empty or
    missing, and an empty or missing one is read as a miss, so the probe runs again."""
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    try:
        record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(json.dumps(value, sort_keys=True) + "\n")
        os.replace(tmp, record)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
