"""COPY --from: files carried from one root to another as a tar stream.

Both halves run with an image's root as their own (a thread of ours, sandbox/inthread, or
a sandbox): `pack` in the source stage's (or image's) root, where its symlinks resolve, and
`unpack` in the root being built, where ours do. Neither side ever resolves an image path
on the host, nor asks libc's name service anything (see _add_named).
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
import stat
import tarfile

from builder.engine.context import not_found
from builder.engine.copier import (
    Dirs,
    Ownership,
    final_target,
    in_image,
    in_root,
    remove_non_dir,
)
from builder.layer.tree import walk
from builder.recipe.chmod import Chmod
from builder.record import dataclass

_MAGIC = re.compile(r"[*?\[]")


@in_root
def pack(root: str, out_fd: int, sources: tuple[str, ...], ref: str = "") -> int:
    """Write SOURCES (paths or wildcards in this root) as a tar to `out_fd`.

    A directory contributes its contents (as "./..."), anything else itself under its
    base name; a named source that is a symlink is followed, as docker follows it.
    """
    with (
        os.fdopen(out_fd, "wb", closefd=False) as raw,
        tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        inodes: dict[tuple[int, int], str] = {}  # the named sources' hard links
        for source in sources:
            path = posixpath.normpath("/" + source)
            found = [path]
            if _MAGIC.search(path):  # root_dir: no character of ROOT may act as a wildcard
                matches = glob.glob(path.lstrip("/"), root_dir=root, include_hidden=True)
                found = sorted("/" + m for m in matches)
            if not found:
                continue  # BuildKit allows a wildcard that matches nothing
            if not os.path.lexists(in_image(root, found[0])):
                raise LookupError(not_found(ref, path))
            for match in found:
                real = os.path.realpath(in_image(root, match))
                if os.path.isdir(real):
                    _add_named(tar, real, ".", inodes)
                    _add_tree(tar, real)
                else:
                    _add_named(tar, real, posixpath.basename(match), inodes)
    return 0


def _add_named(
    tar: tarfile.TarFile, path: str, arcname: str, inodes: dict[tuple[int, int], str]
) -> None:
    """What tar.add(path, arcname, recursive=False) writes, but for the user and group
    names: tarfile's gettarinfo asks libc's name service for them, which inside an image's
    root reads the image's nsswitch.conf and may load its libnss modules into our process
    (sandbox/inthread). Nobody reads them: unpack and extract take the ids."""
    st = os.lstat(path)
    info = _header(arcname, st)
    if info is None:
        return  # a socket: tar.add leaves it out too
    info.mtime = st.st_mtime  # (a float, as gettarinfo's: the PAX header keeps its fraction)
    if info.type == tarfile.REGTYPE:
        inode = (st.st_ino, st.st_dev)  # tar.add's own hard-link bookkeeping (tar.inodes)
        if st.st_nlink > 1 and inode in inodes and arcname != inodes[inode]:
            info.type, info.linkname, info.size = tarfile.LNKTYPE, inodes[inode], 0
            tar.addfile(info)
            return
        inodes[inode] = arcname
        with open(path, "rb") as data:
            tar.addfile(info, data)
        return
    if info.type == tarfile.SYMTYPE:
        info.linkname = os.readlink(path)
    tar.addfile(info)


def _header(name: str, st: os.stat_result) -> tarfile.TarInfo | None:
    """The entry NAME for what ST describes, as gettarinfo makes it without the user and
    group names (and its mtime whole seconds); None for a socket. A symlink's target is the
    caller's to read."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
    kind = st.st_mode
    if stat.S_ISREG(kind):
        info.size = st.st_size
    elif stat.S_ISDIR(kind):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(kind):
        info.type = tarfile.SYMTYPE
    elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(kind) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(kind):
        info.type = tarfile.FIFOTYPE
    else:
        return None
    return info


def _add_tree(tar: tarfile.TarFile, top: str) -> None:
    """What tar.add(recursive=True) writes for the contents of `top`, without its recursion
    and without naming any entry by its full path (a tree may be deeper than either allows).
    Names stay bytes (surrogate-escaped str for tarfile, which writes them back as bytes)."""
    links: dict[tuple[int, int], str] = {}
    # What a sandbox mounts over the root (/proc, /sys, /dev, the /etc files) is not the
    # stage's: a mount point's directory is kept, never what is mounted there. (The layers
    # all live in the store, one filesystem: overlayfs then gives every entry of its own
    # its st_dev, so only mounted ones differ.)
    device = os.stat(top).st_dev
    for visit in walk(top, one_filesystem=True):
        st = visit.st
        if st.st_dev != device and not stat.S_ISDIR(st.st_mode):
            continue
        info = _header("./" + os.fsdecode(visit.path), st)
        if info is None:
            continue  # a socket: tar.add leaves it out too
        if info.type == tarfile.REGTYPE:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, links[key], 0
                tar.addfile(info)
                continue
            links[key] = info.name
            fd = os.open(
                visit.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=visit.dir_fd
            )
            with os.fdopen(fd, "rb") as data:
                tar.addfile(info, data)
            continue
        if info.type == tarfile.SYMTYPE:
            info.linkname = os.fsdecode(os.readlink(visit.name, dir_fd=visit.dir_fd))
        tar.addfile(info)


@dataclass(frozen=True)
class Destination:
    path: str  # absolute, inside the root being built
    single: bool  # one source and DEST has no trailing '/': a lone file lands AT path


@in_root
def unpack(root: str, in_fd: int, dest: Destination, owner: Ownership, chmod: Chmod | None) -> int:
    """Write the tar from `in_fd` under DEST. Entries keep their own uid/gid unless
    --chown gives one (BuildKit's copy); the directories made on the way are root's.

    Entries are reached from fds one component at a time (Dirs): the tree may be deeper
    than PATH_MAX allows to name."""
    ids = owner.resolve(root) if owner.spec else None
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    made_mode = chmod.created_dir_mode if chmod else 0o755
    opened = Dirs(root_fd, made_mode, ids or (0, 0))
    link_dirs = Dirs(root_fd)  # hard links' targets, never made
    if dest.single:
        dest = Destination(final_target(root, dest.path), dest.single)
    try:
        _unpack(opened, link_dirs, in_fd, dest, ids, chmod)
    finally:
        opened.close()
        link_dirs.close()
        os.close(root_fd)
    return 0


def _unpack(
    opened: Dirs,
    link_dirs: Dirs,
    in_fd: int,
    dest: Destination,
    owner: tuple[int, int] | None,
    chmod: Chmod | None,
) -> None:
    dest_rel = dest.path.strip("/")
    dirs: list[tuple[str, int]] = []
    with (
        os.fdopen(in_fd, "rb", closefd=False) as raw,
        tarfile.open(fileobj=raw, mode="r|") as tar,
    ):
        base = dest_rel
        for index, member in enumerate(tar):
            rel = posixpath.normpath(member.name)
            if rel == ".." or rel.startswith(("../", "/")):
                raise LookupError(f"refusing entry {member.name!r}")
            # docker: COPY --from=x /file /dest -> /dest is the file, unless /dest is
            # already a directory.
            lone_file = index == 0 and dest.single and not member.isdir() and "/" not in rel
            if lone_file and not opened.is_dir(dest_rel):
                base, rel = posixpath.dirname(dest_rel), posixpath.basename(dest_rel)
            if rel == ".":  # the destination of a directory's contents: made as a parent
                opened.open(base)
                continue
            target = posixpath.join(base, rel)
            mode = chmod.apply(member.mode, member.isdir()) if chmod else member.mode
            uid, gid = owner or (member.uid, member.gid)
            if member.isdir():
                if opened.is_dir(target):  # one the image has keeps its owner and mode
                    continue
                fd = opened.open(target)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                dirs.append((target, int(member.mtime)))
                continue
            parent, name = posixpath.split(target)
            pfd = opened.open(parent)
            remove_non_dir(name, pfd)
            if member.issym():
                os.symlink(member.linkname, name, dir_fd=pfd)
            elif member.islnk():
                link = posixpath.join(base, posixpath.normpath(member.linkname))
                link_parent, link_name = posixpath.split(link)
                source_dir = link_dirs.open(link_parent, create=False)
                os.link(link_name, name, src_dir_fd=source_dir, dst_dir_fd=pfd,
                        follow_symlinks=False)  # fmt: skip
                continue
            elif member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
                with os.fdopen(os.open(name, flags, 0o600, dir_fd=pfd), "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                dev = os.makedev(member.devmajor, member.devminor)
                os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
            elif member.isfifo():
                os.mkfifo(name, dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            if not member.issym():
                os.chmod(name, mode, dir_fd=pfd)  # after chown, which clears setuid bits
            times = (member.mtime, member.mtime)
            os.utime(name, times, dir_fd=pfd, follow_symlinks=False)
    for path, mtime in reversed(dirs):
        os.utime(opened.open(path), (mtime, mtime))
