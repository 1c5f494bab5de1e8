"""Which snapshotter makes a RUN's (or `builder run`'s) root: overlayfs where it can be
mounted, else a copy of the layers (layer/snapshot.py), which writes the same layers.

The names are BuildKit's (`buildkitd --oci-worker-snapshotter`, buildkitd.toml's
`snapshotter`): `overlayfs`, `native` (the copy), and `auto`; podman's `overlay` and
`vfs` and the plain `copy` are accepted as aliases. It is forced by $BUILDER_SNAPSHOTTER
or the config file's `[build] snapshotter` (the CLI reads both); `auto` probes once
whether this user can mount an overlay of dirs in the store (and remove a lower file
through it), and the answer is kept in the store, keyed by the kernel's release and
whether we are in a user namespace of our own, so the probe's fork is paid once.

BuildKit's third, fuse-overlayfs, is refused by name: its upper dirs vary by version (1.10
marks an opaque dir with a `.wh..wh..opq` file and a `.wh..opq` whiteout, and keeps its
own `user.fuseoverlayfs.*` xattrs), so it could not promise the layers overlayfs makes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from builder.errors import UsageError
from builder.sandbox.idmap import in_initial_user_namespace

Snapshotter = Literal["overlayfs", "native"]
NAMES: Final[dict[str, Snapshotter | None]] = {
    "auto": None,
    "overlayfs": "overlayfs",
    "overlay": "overlayfs",
    "native": "native",
    "copy": "native",
    "vfs": "native",
}
ENV: Final = "BUILDER_SNAPSHOTTER"


def parse(text: str, where: str) -> Snapshotter | None:
    """A snapshotter's name (None: auto); `where` names the setting in the error."""
    name = text.strip().lower()
    if name == "fuse-overlayfs":
        raise UsageError(
            f"{where}: fuse-overlayfs is not supported; where overlayfs cannot be mounted,"
            " the copying snapshotter (native) makes the same layers"
        )
    try:
        return NAMES[name]
    except KeyError:
        raise UsageError(
            f"{where}: unknown snapshotter {text!r} (one of: {', '.join(NAMES)})"
        ) from None


def choose(forced: Snapshotter | None, scratch: Callable[[str], Path], record: Path) -> Snapshotter:
    """`forced`, else the remembered or probed answer for this store (`record` keeps it,
    `scratch` makes the probe's dirs)."""
    if forced is not None:
        return forced
    key = {"kernel": os.uname().release, "user_namespace": not in_initial_user_namespace()}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(record.read_text(encoding="utf-8"))
        if isinstance(known, dict) and known.get("key") == key:
            found = NAMES.get(str(known.get("snapshotter")))
            if found is not None:
                return found
    probe = scratch("probe")
    try:
        answer: Snapshotter = "overlayfs" if _overlay_works(probe) else "native"
    finally:
        _remove_probe(probe)
    _remember(record, {"key": key, "snapshotter": answer})
    return answer


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
    """Best effort (a read-only store just probes again): temp file, fsync, rename."""
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(json.dumps(value, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, record)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
