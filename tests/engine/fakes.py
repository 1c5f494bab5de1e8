"""A fake executor: the engine's steps run without root, namespaces or mounts.

RUN: nothing is executed. The fake looks the command up in its script and applies the
scripted changes straight to the upper dir, in overlayfs form (a deletion is a whiteout,
a char device 0/0), writes the scripted output lines and returns the scripted status.

COPY, COPY --from, ADD and WORKDIR: their real in-root writers run, in this process, on a
plain directory that merges the lower layers (a copy, not a mount); what they changed is
then copied to the upper dir (deletions as whiteouts), as overlayfs would have recorded it.
The writers take the root's path, so without pivot_root they still write inside it. Two
things differ from the sandbox: an absolute symlink inside the image resolves on the host
(test images hold none that a writer follows), and when not run as root the files stay
ours (chown is skipped), as a rootless sandbox would map us to uid 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.engine.executor import InRoot, OverlayRoot, Process
from builder.layer.whiteout import is_overlay_opaque, is_overlay_whiteout, make_overlay_whiteout

ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Effect:
    """What a scripted RUN does. Paths are absolute, as the image sees them."""

    files: Mapping[str, bytes | str] = field(default_factory=dict)  # written with mode 0644
    dirs: tuple[str, ...] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> link text
    delete: tuple[str, ...] = ()  # whiteouts in the upper dir
    output: tuple[str, ...] = ()  # lines on stdout/stderr
    status: int = 0  # a non-zero status applies no change


class FakeExecutor:
    """The `Executor` of the unit tests (see the module's docstring).

    `scripts` maps a command to its effect: a str is matched against the last word of the
    argv (a shell-form RUN's script), a tuple against the whole argv (exec form). A command
    not in it is an error, unless there is a `default` effect.
    """

    def __init__(
        self,
        scripts: Mapping[str | tuple[str, ...], Effect] | None = None,
        default: Effect | None = None,
    ) -> None:
        self.scripts: dict[str | tuple[str, ...], Effect] = dict(scripts or {})
        self.default = default
        self.runs: list[Process] = []  # every process asked for, in order
        self.calls: list[str] = []  # the label of every in-root writer run, in order

    def on(self, command: str | tuple[str, ...], effect: Effect | None = None) -> None:
        self.scripts[command] = effect or Effect()

    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        self.runs.append(process)
        effect = self.scripts.get(process.argv)
        if effect is None and process.argv:
            effect = self.scripts.get(process.argv[-1])
        effect = effect or self.default
        if effect is None:
            raise AssertionError(f"fake executor: no script for {process.argv!r}")
        for line in effect.output:
            os.write(output, f"{line}\n".encode())
        if effect.status == 0:
            _apply(effect, root)
        return effect.status

    def call(
        self, root: OverlayRoot, label: str, fn: InRoot, output: int, keep_fds: tuple[int, ...] = ()
    ) -> int:
        self.calls.append(label)
        merged = root.work / "merged"  # the work dir is overlayfs' own; unused here
        merged.mkdir()
        try:
            for layer in (*root.lowers, root.upper):
                _overlay_onto(layer, merged)
            before = _snapshot(merged)
            status = _call_writer(fn, str(merged), output)
            if status == 0:
                _record_changes(merged, before, _snapshot(merged), root.upper)
            return status
        finally:
            shutil.rmtree(merged, ignore_errors=True)


# -- RUN's scripted changes ------------------------------------------------------------------


def _apply(effect: Effect, root: OverlayRoot) -> None:
    for path in effect.delete:
        parent, name = _upper_parent(root, path)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            make_overlay_whiteout(name, fd)
        finally:
            os.close(fd)
    for path in effect.dirs:
        parent, name = _upper_parent(root, path)
        (parent / name).mkdir(0o755, exist_ok=True)
    for path, content in effect.files.items():
        parent, name = _upper_parent(root, path)
        data = content.encode() if isinstance(content, str) else content
        (parent / name).write_bytes(data)
        os.chmod(parent / name, 0o644)
    for path, text in effect.symlinks.items():
        parent, name = _upper_parent(root, path)
        os.symlink(text, parent / name)


def _upper_parent(root: OverlayRoot, path: str) -> tuple[Path, str]:
    """The upper dir's copy of PATH's parent, made as overlayfs copies dirs up: with the
    lower's mode, owner and times."""
    parts = [p for p in path.split("/") if p]
    current = root.upper
    for depth in range(len(parts) - 1):
        current = current / parts[depth]
        if current.is_dir():
            continue
        current.mkdir(0o755)
        rel = "/".join(parts[: depth + 1])
        lower = next((lo / rel for lo in reversed(root.lowers) if (lo / rel).is_dir()), None)
        if lower is not None:
            _copy_meta(lower, current, os.lstat(lower))
    return current, parts[-1]


# -- the in-root writers -----------------------------------------------------------------------


def _call_writer(fn: InRoot, root: str, output: int) -> int:
    """fn(root) with its stderr on OUTPUT; an exception is a message and status 1, as in
    the sandbox's forked child."""
    saved = os.dup(2)
    os.dup2(output, 2)
    try:
        with _no_chown_unless_root():
            return int(fn(root)) & 0xFF
    except Exception as err:
        os.write(2, f"builder: {type(err).__name__}: {err}\n".encode())
        return 1
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _no_chown_unless_root() -> Iterator[None]:
    if ROOT:
        yield
        return
    originals = os.chown, os.lchown, os.fchown

    def skip(*_args: object, **_kwargs: object) -> None:
        return None

    os.chown = os.lchown = os.fchown = skip  # type: ignore[assignment]
    try:
        yield
    finally:
        os.chown, os.lchown, os.fchown = originals


# -- a merged view without overlayfs, and what changed in it ----------------------------------


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        return {
            n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)
        }
    except OSError:
        return {}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _copy_meta(src: Path | str, dst: Path | str, st: os.stat_result) -> None:
    if ROOT:
        os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_node(src: Path, dst: Path, st: os.stat_result, links: dict[int, Path]) -> None:
    """A copy of one non-dir entry; a second name of a hard-linked file is linked again."""
    if st.st_nlink > 1 and stat.S_ISREG(st.st_mode) and st.st_ino in links:
        os.link(links[st.st_ino], dst)
        return
    if stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
        links[st.st_ino] = dst
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst)
    else:
        os.mknod(dst, st.st_mode, st.st_rdev)
    _copy_meta(src, dst, st)


def _overlay_onto(layer: Path, merged: Path) -> None:
    """Lay an overlay-form dir over MERGED: whiteouts delete, opaque dirs hide what is below."""
    dirs: list[tuple[Path, os.stat_result]] = []
    links: dict[int, Path] = {}
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        target = merged / rel
        if rel != "." and is_overlay_opaque(_xattrs(dirpath)):
            for child in list(target.iterdir()):
                _remove(child)
        for name in sorted(dirnames + filenames):
            src = Path(dirpath, name)
            st = os.lstat(src)
            dst = target / name
            if is_overlay_whiteout(st, _xattrs(str(src))):
                _remove(dst)
            elif stat.S_ISDIR(st.st_mode):
                if os.path.lexists(dst) and not (dst.is_dir() and not dst.is_symlink()):
                    dst.unlink()
                dst.mkdir(exist_ok=True)
                dirs.append((dst, st))
            else:
                _remove(dst)
                _copy_node(src, dst, st, links)
    for dst, st in reversed(dirs):  # children first changed their parents' times
        _copy_meta(dst, dst, st)


Signature = tuple[object, ...]


def _snapshot(root: Path) -> dict[str, Signature]:
    """Every entry below ROOT with what a change would alter: type, mode, owner, times,
    inode, and a file's content or a link's text."""
    found: dict[str, Signature] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content: object = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            found[os.path.relpath(path, root)] = (
                stat.S_IFMT(st.st_mode),
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                content,
            )
    return found


def _record_changes(
    merged: Path, before: dict[str, Signature], after: dict[str, Signature], upper: Path
) -> None:
    """Write into UPPER what overlayfs would hold after the same changes."""
    dirs: dict[str, os.stat_result] = {}
    links: dict[int, Path] = {}

    def parent_dirs(rel: str) -> None:
        parts = rel.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            if sub not in dirs:
                (upper / sub).mkdir(exist_ok=True)
                dirs[sub] = os.lstat(merged / sub)

    for rel in sorted(after):  # parents before children
        if before.get(rel) == after[rel]:
            continue
        parent_dirs(rel)
        st = os.lstat(merged / rel)
        if stat.S_ISDIR(st.st_mode):
            (upper / rel).mkdir(exist_ok=True)
            dirs[rel] = st
        else:
            _copy_node(merged / rel, upper / rel, st, links)
    for rel in sorted(set(before) - set(after)):
        parent = os.path.dirname(rel)
        if parent and after.get(parent, (None,))[0] != stat.S_IFDIR:
            continue  # its parent went too (or is no dir now): nothing below it is seen
        if parent:
            parent_dirs(rel)
        fd = os.open(upper / parent if parent else upper, os.O_RDONLY | os.O_DIRECTORY)
        try:
            make_overlay_whiteout(os.path.basename(rel), fd)
        finally:
            os.close(fd)
    for rel in sorted(dirs, reverse=True):
        _copy_meta(upper / rel, upper / rel, dirs[rel])
