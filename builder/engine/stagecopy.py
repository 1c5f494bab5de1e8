"""COPY --from: files carried from one root to another as a tar stream.

Both halves run inside sandboxes: `pack` in the source stage's (or image's) root, where
its symlinks resolve, and `unpack` in the root being built, where ours do. Neither side
ever resolves an image path on the host.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass

from builder.engine.copier import Ownership, in_image, in_root, remove_non_dir

_MAGIC = re.compile(r"[*?\[]")


@in_root
def pack(root: str, out_fd: int, sources: tuple[str, ...]) -> int:
    """Write SOURCES (paths or wildcards in this root) as a tar to `out_fd`.

    A directory contributes its contents (as "./..."), anything else itself under its
    base name; a named source that is a symlink is followed, as docker follows it.
    """
    with (
        os.fdopen(out_fd, "wb", closefd=False) as raw,
        tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for source in sources:
            path = posixpath.normpath("/" + source)
            found = [path]
            if _MAGIC.search(path):  # root_dir: no character of ROOT may act as a wildcard
                matches = glob.glob(path.lstrip("/"), root_dir=root, include_hidden=True)
                found = sorted("/" + m for m in matches)
            if not found or not os.path.lexists(in_image(root, found[0])):
                raise LookupError(f"{source}: no such file or directory")
            for match in found:
                real = os.path.realpath(in_image(root, match))
                if os.path.isdir(real):
                    tar.add(real, arcname=".", recursive=True)
                else:
                    tar.add(real, arcname=posixpath.basename(match), recursive=False)
    return 0


@dataclass(frozen=True)
class Destination:
    path: str  # absolute, inside the root being built
    single: bool  # one source and DEST has no trailing '/': a lone file lands AT path


@in_root
def unpack(root: str, in_fd: int, dest: Destination, owner: Ownership, chmod: int | None) -> int:
    """Write the tar from `in_fd` under DEST, owned by --chown (root by default)."""
    uid, gid = owner.resolve(root)
    dest_path = in_image(root, dest.path)
    dirs: list[tuple[str, int]] = []
    with (
        os.fdopen(in_fd, "rb", closefd=False) as raw,
        tarfile.open(fileobj=raw, mode="r|") as tar,
    ):
        base = dest_path
        for index, member in enumerate(tar):
            rel = posixpath.normpath(member.name)
            if rel == ".." or rel.startswith(("../", "/")):
                raise LookupError(f"refusing entry {member.name!r}")
            # docker: COPY --from=x /file /dest -> /dest is the file, unless /dest is
            # already a directory.
            lone_file = index == 0 and dest.single and not member.isdir() and "/" not in rel
            if lone_file and not os.path.isdir(dest_path):
                base, rel = posixpath.dirname(dest_path) or "/", posixpath.basename(dest_path)
            target = base if rel == "." else posixpath.join(base, rel)
            os.makedirs(posixpath.dirname(target) or "/", 0o755, exist_ok=True)
            mode = chmod if chmod is not None else member.mode
            if member.isdir():
                os.makedirs(target, 0o755, exist_ok=True)
                os.chown(target, uid, gid)
                os.chmod(target, mode)
                dirs.append((target, int(member.mtime)))
                continue
            remove_non_dir(target)
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                os.link(posixpath.join(base, posixpath.normpath(member.linkname)), target)
                continue
            elif member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                with open(target, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            elif member.isfifo():
                os.mkfifo(target)
            os.lchown(target, uid, gid)
            if not member.issym():
                os.chmod(target, mode)  # after chown, which clears setuid bits
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    for path, mtime in reversed(dirs):
        os.utime(path, (mtime, mtime))
    return 0
