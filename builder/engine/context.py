"""The build context: the files COPY may read, filtered by .dockerignore, keyed by content.

A context is walked once per build (lazily, only if a COPY needs it). Each entry carries a
content digest so that cache keys depend on what the files hold, never on their mtimes or on
where the context lives; a rebuild after `git clone` hits the cache.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from typing import Protocol

from builder.errors import BuildContextError
from builder.layer.tree import open_below, open_dir, walk_listings
from builder.record import dataclass

HASH_CHUNK = 1 << 20
DIGEST_BATCH = 4096  # copy_digest's lines per update


class IgnoreRules(Protocol):
    def excludes(self, rel_path: str) -> bool: ...


@dataclass(frozen=True)
class ContextEntry:
    path: str  # relative to the context root, '/'-separated, no leading './'
    kind: str  # "file" | "dir" | "symlink"
    mode: int  # permission bits (with setuid/setgid/sticky)
    size: int
    mtime_ns: int  # kept on copy, never part of a key
    digest: str  # sha256 of a file's bytes; a symlink's target; "" for a dir


@dataclass(frozen=True)
class CopyItem:
    """One context entry and where it lands, relative to the destination."""

    entry: ContextEntry
    target: str  # absolute path inside the image
    # A single file copied to a DEST without a trailing '/': if DEST turns out to be an
    # existing directory in the image, the file goes inside it (docker's rule).
    into_existing_dir: bool = False
    name: str = ""  # the source's own name, for that case (a followed symlink keeps its name)
    # A named source itself (or the destination of a directory source's contents), not an
    # entry found inside a directory: only a source is unpacked by ADD, and only its
    # destination is resolved through a symlink.
    source: bool = False


def not_found(ref: str, path: str) -> str:
    """BuildKit's words for a COPY source that is not there (what users search for)."""
    return (
        f"failed to compute cache key: failed to calculate checksum of ref {ref}:"
        f' "{posixpath.normpath("/" + path)}": not found'
    )


def _file_digest(dir_fd: int, name: str) -> str:
    h = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(fd, "rb", buffering=0) as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _has_magic(pattern: str) -> bool:
    return re.search(r"[*?\[]", pattern) is not None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match as a regex: '*' and '?' never cross '/', '\\' escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise BuildContextError(f"COPY source pattern {pattern!r}: unclosed '['")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append(("[^/" if negate else "[") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def _memo_name(rel: str) -> str:
    """A path as the memo (stored as JSON, which is UTF-8) holds it: itself, or for a name
    that is not UTF-8, a NUL (which no path holds) and its bytes in hex."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "\0" + rel.encode("utf-8", "surrogateescape").hex()
    return rel


def _memo_path(name: str) -> str:
    """_memo_name's inverse."""
    return os.fsdecode(bytes.fromhex(name[1:])) if name.startswith("\0") else name


# A memo entry: the stat fields that must all match for a stored content digest to be reused.
MemoEntry = tuple[int, int, int, int, str]  # size, mtime_ns, inode, ctime_ns, sha256 hex
RACY_NS = 1_000_000_000
SNAPSHOT_VERSION = 2  # of the snapshot's format (and of the marshal bytes its signature hashes)
RACY_LIMIT = 64  # racy files a snapshot may name (each is read again to use it)
MEMO_FILES, MEMO_BYTES = 32, 1 << 20  # read again beyond either: the memo is written
_CTIME, _MTIME = attrgetter("st_ctime_ns"), attrgetter("st_mtime_ns")


class Snapshot:
    """The whole context as the last walk saw it, and what its COPYs digested.

    `signature` hashes every visible entry's path, mode, size, mtime, inode and ctime (the
    memo's fields, for dirs and symlinks too), dir by dir, and the ignore rules. When a walk
    finds the same signature, nothing in the context changed since (the memo's rule, for
    the whole tree at once: a write changes ctime; a dir's names are in the signature),
    except in the files and symlinks changed within RACY_NS before `made_ns` (a write in
    the same clock tick could leave every stat field as it was): `racy` names those with
    their content digest or link target then ("@" first), and they are read again. So a
    COPY of the same sources to the same destination has the digest it had: `copies`
    (sources and destination -> copy_digest). A cached COPY of a big context then stats
    every entry but makes no ContextEntry, plan or digest line, and reads no memo.
    """

    __slots__ = ("copies", "made_ns", "racy", "signature")

    def __init__(
        self,
        made_ns: int,
        signature: str,
        copies: dict[str, str],
        racy: dict[str, str] | None = None,
    ) -> None:
        self.made_ns = made_ns
        self.signature = signature
        self.copies = copies
        self.racy = racy or {}

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> Snapshot | None:
        """The snapshot a record holds; None for a record of another shape (a miss)."""
        made, signature, copies = value.get("made_ns"), value.get("signature"), value.get("copies")
        racy = value.get("racy")
        if (
            value.get("version") != SNAPSHOT_VERSION
            or not isinstance(made, int)
            or not isinstance(signature, str)
            or not isinstance(copies, dict)
            or not all(isinstance(v, str) for v in copies.values())
            or not isinstance(racy, dict)
            or not all(isinstance(v, str) for v in racy.values())
        ):
            return None
        return cls(made, signature, copies, racy)

    def holds(self, signature: str, newest: int) -> bool:
        """Whether a walk that found `signature`, its newest ctime or mtime `newest`,
        found the context as this snapshot saw it, with no file to read again."""
        return signature == self.signature and newest < self.made_ns - RACY_NS

    def to_json(self) -> dict[str, object]:
        return {
            "version": SNAPSHOT_VERSION,
            "made_ns": self.made_ns,
            "signature": self.signature,
            "copies": self.copies,
            "racy": self.racy,
        }


def _copy_name(sources: tuple[str, ...], dest: str) -> str:
    """A COPY's sources and destination as one snapshot key (JSON: non-UTF-8 bytes as hex;
    "=" first otherwise, so that no UTF-8 key can look like the hex form)."""
    name = _memo_name("\0".join((*sources, dest)))
    return name if name.startswith("\0") else "=" + name


class BuildContext:
    """The context's visible entries.

    `memo` (from an earlier build of the same context) lets a file whose size, mtime, inode
    and ctime are all unchanged keep its recorded digest instead of being read again, as
    git's index does. Keys still come from content: the memo only saves re-reading it.
    Entries changed within RACY_NS of the memo's making are hashed again, since a write in
    the same clock tick could leave every stat field as it was. `load_memo` gives the memo
    only if a walk needs it; `snapshot` (see Snapshot) lets copy_key skip that walk.
    """

    def __init__(
        self,
        root: Path,
        ignore: IgnoreRules | None = None,
        memo: Mapping[str, MemoEntry] | None = None,
        memo_made_ns: int = 0,
        *,
        load_memo: Callable[[], tuple[Mapping[str, MemoEntry], int]] | None = None,
        snapshot: Snapshot | None = None,
        ignore_text: str = "",
    ) -> None:
        self.root = root
        self._ignore = ignore
        self._memo = memo or {}
        self._memo_made_ns = memo_made_ns
        self._load_memo = load_memo  # the memo, read only if a walk needs it
        self._snapshot = snapshot
        self._ignore_text = ignore_text  # the rules' source: part of the signature
        self.new_memo: dict[str, MemoEntry] = {}
        self.walked_ns = 0  # when the walk began: the new memo's time
        self.hashed = 0  # files read this time (0 and the same paths: the memo is current)
        self.hashed_bytes = 0  # and their bytes
        self._signature = ""  # of the full walk's entries ("" if one vanished meanwhile)
        self._newest = 0  # their newest ctime or mtime
        self._racy: dict[str, str] = {}  # files and links changed within RACY_NS of the walk
        self._digested: dict[str, str] = {}  # copy_key's digests from this build's entries
        self._walked: _Walked | None = None  # a check's walk that missed, for the full one

    def memo_changed(self) -> bool:
        """Whether the new memo is worth its write: this walk read more files again than
        MEMO_FILES, or more bytes than MEMO_BYTES. Below that, reading them again in the
        next full walk costs less than the write (JSON of every entry and two fsyncs, on
        every changed build's path); a memo left as it was stays right (each entry is
        checked against the file's stat), it only spares less."""
        return self.walked_ns > 0 and (self.hashed > MEMO_FILES or self.hashed_bytes > MEMO_BYTES)

    @cached_property
    def entries(self) -> dict[str, ContextEntry]:
        """Every visible entry, by relative path (the root itself is "")."""
        self.walked_ns = time.time_ns()
        try:
            return self._scan()
        except OSError as err:
            raise BuildContextError(
                f"cannot read the build context {self.root}: {err.strerror}"
                + (f": {err.filename}" if err.filename else "")
            ) from None

    def _scan(self) -> dict[str, ContextEntry]:
        # By dir fd (layer/tree): a context may be deeper than the stack allows and its
        # paths longer than PATH_MAX. Names are bytes on disk; here they are str with
        # undecodable bytes surrogate-escaped (os.fsdecode), which os.fsencode gives back.
        # Excluded dirs are still walked: a later `!` exception may bring a child back.
        # One loop, its names local: a cached rebuild of a big context is mostly this loop
        # (one listing per dir, one fstatat and a memo lookup per entry).
        # A snapshot check that found the context changed walked it already (every visible
        # entry's lstat, the signature): its listings are taken as they are, in one walk
        # (30-60 ms of a changed big-context build went to a second one), its time as
        # the walk's. A dir's fd is then opened (by name below the root) only to read.
        found: dict[str, ContextEntry] = {}
        if self._load_memo is not None:
            self._memo, self._memo_made_ns = self._load_memo()
        ignore, memo, new_memo = self._ignore, self._memo, self.new_memo
        walked, self._walked = self._walked, None
        dirs: Iterator[tuple[Callable[[], int], str, list[os.DirEntry[str]]]]
        if walked is None:
            signed: _Signature | None = _Signature(self._ignore_text)
            dirs = _walked_now(self.root)
        else:
            self.walked_ns, signed, ignore = walked.started_ns, None, None  # filtered then
            dirs = _reopened(self.root, walked.listings)
        vanished = False
        stale_from = self._memo_made_ns - RACY_NS
        racy_from, racy = self.walked_ns - RACY_NS, self._racy
        is_dir, is_link, is_reg, imode = stat.S_ISDIR, stat.S_ISLNK, stat.S_ISREG, stat.S_IMODE
        for dir_fd, prefix, listing in dirs:
            visible = []
            for item in listing:
                rel = prefix + item.name
                if ignore is not None and ignore.excludes(rel):
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    vanished = True
                    continue  # removed meanwhile
                visible.append(item)
                fmt = st.st_mode
                if is_reg(fmt):
                    size, mtime, ctime = st.st_size, st.st_mtime_ns, st.st_ctime_ns
                    key = rel if rel.isascii() else _memo_name(rel)
                    known = memo.get(key)
                    # Field by field, no tuple: the memo's entries are JSON lists.
                    if (
                        known is not None
                        and len(known) == 5
                        and mtime < stale_from
                        and ctime < stale_from
                        and known[0] == size
                        and known[1] == mtime
                        and known[2] == st.st_ino
                        and known[3] == ctime
                    ):
                        digest = known[4]
                        new_memo[key] = known  # the same values
                    else:
                        digest = _file_digest(dir_fd(), item.name)
                        self.hashed += 1
                        self.hashed_bytes += size
                        new_memo[key] = (size, mtime, st.st_ino, ctime, digest)
                    found[rel] = ContextEntry(rel, "file", imode(fmt), size, mtime, digest)
                    if mtime >= racy_from or ctime >= racy_from:
                        racy[key] = digest
                elif is_dir(fmt):
                    found[rel] = ContextEntry(rel, "dir", imode(fmt), 0, st.st_mtime_ns, "")
                elif is_link(fmt):
                    target = os.readlink(item.name, dir_fd=dir_fd())
                    found[rel] = ContextEntry(rel, "symlink", imode(fmt), 0, st.st_mtime_ns, target)
                    if st.st_mtime_ns >= racy_from or st.st_ctime_ns >= racy_from:
                        racy[_memo_name(rel)] = "@" + _memo_name(target)
                else:
                    raise BuildContextError(
                        f"{rel}: only files, directories and symlinks can be copied"
                    )
            if signed is not None:
                signed.add(prefix, visible)
        if signed is None:
            assert walked is not None
            signed = walked.signed
        self._signature = "" if vanished else signed.hexdigest()
        self._newest = signed.newest
        return found

    def _current(self) -> bool:
        """Whether the context is as the snapshot saw it (a walk of lstats, no reads)."""
        snapshot = self._snapshot
        if snapshot is None:
            return False
        signed, ignore = _Signature(self._ignore_text), self._ignore
        walked = _Walked(time.time_ns(), signed)
        try:
            for _fd, prefix, listing in walk_listings(self.root):
                if ignore is not None:
                    listing = [e for e in listing if not ignore.excludes(prefix + e.name)]
                signed.add(prefix, listing)
                walked.listings.append((prefix, listing))
        except OSError:  # a dir or an entry gone meanwhile: the full walk says what
            return False
        if signed.hexdigest() == snapshot.signature and (
            signed.newest < snapshot.made_ns - RACY_NS or self._same_racy(snapshot.racy)
        ):
            return True
        self._walked = walked  # the full walk's, if plan_copy asks for one
        return False

    def _same_racy(self, racy: Mapping[str, str]) -> bool:
        """Whether the files and links the snapshot found racy hold what they held then
        (read by name below the root, following no symlink)."""
        root_fd = open_dir(self.root)
        try:
            for key, then in racy.items():
                parent, _, name = os.fsencode(_memo_path(key)).rpartition(b"/")
                dir_fd = open_below(root_fd, parent)
                try:
                    if then.startswith("@"):
                        now = "@" + _memo_name(os.fsdecode(os.readlink(name, dir_fd=dir_fd)))
                    else:
                        now = _file_digest(dir_fd, os.fsdecode(name))
                finally:
                    os.close(dir_fd)
                if now != then:
                    return False
        except OSError:  # gone, or no longer a file or link: the full walk says what
            return False
        finally:
            os.close(root_fd)
        return True

    @cached_property
    def _unchanged(self) -> bool:
        return self._current()

    def copy_key(self, sources: tuple[str, ...], dest: str) -> str:
        """copy_digest(plan_copy(SOURCES, DEST)), from the snapshot when the context is
        as it was (its errors are plan_copy's: a failed plan is never kept)."""
        name = _copy_name(sources, dest)
        if self._snapshot is not None and "entries" not in self.__dict__ and self._unchanged:
            known = self._snapshot.copies.get(name)
            if known is not None:
                return known
        digest = copy_digest(self.plan_copy(sources, dest))
        self._digested[name] = digest
        return digest

    def plan_keyed(
        self, sources: tuple[str, ...], dest: str, key: str
    ) -> tuple[list[CopyItem], str]:
        """plan_copy(SOURCES, DEST) for a COPY that copy_key gave `key`, and the key of
        what it plans: `key` again, unless the snapshot gave it and the context changed
        between that check and this walk (the layer is then keyed by what it holds)."""
        items = self.plan_copy(sources, dest)
        name = _copy_name(sources, dest)
        if self._digested.get(name) != key:
            self._digested[name] = copy_digest(items)
        return items, self._digested[name]

    def snapshot_to_save(self) -> Snapshot | None:
        """The snapshot for the next build, if this one walked the context in full (with
        the previous snapshot's COPYs, when they still hold); else None."""
        if not self._signature or not self._digested or len(self._racy) > RACY_LIMIT:
            return None
        copies = dict(self._digested)
        old = self._snapshot
        if old is not None and old.holds(self._signature, self._newest):
            if copies.items() <= old.copies.items():
                return None  # nothing new to keep
            copies = {**old.copies, **copies}
        return Snapshot(self.walked_ns, self._signature, copies, self._racy)

    def _match(self, source: str) -> list[str]:
        clean = posixpath.normpath("/" + source).lstrip("/")
        if clean in ("", "."):
            return [""]
        if not _has_magic(clean):
            found = self._through_links(clean)
            if found is not None:
                return [found]
            raise BuildContextError(not_found("context", clean))
        # The directories before the first wildcard may go through symlinks too.
        parts = clean.split("/")
        fixed = next(i for i, part in enumerate(parts) if _has_magic(part))
        if fixed:
            found = self._through_links("/".join(parts[:fixed]))
            found = self._follow(found, strict=False) if found is not None else None
            entry = self.entries.get(found) if found else None
            if entry is None or entry.kind != "dir":
                return []
            clean = "/".join([found, *parts[fixed:]]) if found else "/".join(parts[fixed:])
        regex = _glob_regex(clean)
        # A wildcard that matches nothing copies nothing: BuildKit allows it.
        return sorted(p for p in self.entries if regex.fullmatch(p))

    def _through_links(self, rel: str) -> str | None:
        """REL with the symlinked directories on its way followed inside the context (a
        `..` stops at its root, as BuildKit's fs.RootPath); None when it is not there.
        The last component is left as it is (plan_copy follows a named source link)."""
        parts = rel.split("/")
        resolved = ""
        for i, part in enumerate(parts):
            resolved = posixpath.join(resolved, part) if resolved else part
            if i < len(parts) - 1:
                resolved = self._follow(resolved, strict=False)
                entry = self.entries.get(resolved) if resolved else None
                if resolved and (entry is None or entry.kind != "dir"):
                    return None
        return resolved if resolved in self.entries else None

    def _tree(self, top: str, dest: str) -> list[CopyItem]:
        """The entries below TOP (not TOP itself), in path order, landing below DEST."""
        prefix = f"{top}/" if top else ""
        cut = len(prefix)
        base = dest if dest.endswith("/") else f"{dest}/"  # posixpath.join, per entry
        entries = self.entries
        # One comprehension: a cached COPY of a big context still plans every entry.
        return [
            CopyItem(entries[path], base + path[cut:])
            for path in sorted(entries)
            if path.startswith(prefix) and path != top
        ]

    def plan_copy(self, sources: tuple[str, ...], dest: str) -> list[CopyItem]:
        """The entries COPY SOURCES DEST writes, with docker's rules for DEST.

        A directory source copies its contents, not itself. DEST is a directory when it ends
        in '/' or when there are several sources; otherwise a single file lands at DEST itself
        (unless DEST is an existing directory in the image, which the copier checks there).
        """
        matches = [m for source in sources for m in self._match(source)]
        dest_is_dir = dest.endswith("/") or len(matches) > 1
        dest = posixpath.normpath(dest)
        items: list[CopyItem] = []
        for match in matches:
            found = self._follow(match)
            entry = self.entries.get(found) if found else None
            if entry is None or entry.kind == "dir":
                items.extend(self._tree(found, dest))
                # The context root has no entry of its own: its destination is made all
                # the same, as BuildKit makes it (even for an empty context).
                top = entry or ContextEntry("", "dir", 0o755, 0, 0, "")
                items.append(CopyItem(top, dest, source=True))
                continue
            name = posixpath.basename(match)
            if dest_is_dir:
                items.append(CopyItem(entry, posixpath.join(dest, name), source=True))
            else:
                items.append(CopyItem(entry, dest, into_existing_dir=True, name=name, source=True))
        return items

    def _follow(self, rel: str, *, strict: bool = True) -> str:
        """A named source that is a symlink is followed, as docker follows it, but only
        inside the context: the link is resolved against the context root, never the host.
        Not STRICT: a link to a path the context lacks gives that path."""
        for _ in range(40):
            entry = self.entries.get(rel)
            if entry is None or entry.kind != "symlink":
                return rel
            base = "/" if entry.digest.startswith("/") else "/" + posixpath.dirname(rel)
            rel = posixpath.normpath(posixpath.join(base, entry.digest)).lstrip("/")
            if strict and rel not in self.entries and rel != "":
                raise BuildContextError(
                    f"COPY source {entry.path!r} is a symlink to {entry.digest!r}, which is not"
                    " in the build context"
                )
        raise BuildContextError(f"COPY source {rel!r}: too many levels of symbolic links")


class _Walked:
    """A snapshot check's walk: when it began, its signature, and each dir's visible
    entries (lstat cached by each entry), parents first."""

    __slots__ = ("listings", "signed", "started_ns")

    def __init__(self, started_ns: int, signed: _Signature) -> None:
        self.started_ns = started_ns
        self.signed = signed
        self.listings: list[tuple[str, list[os.DirEntry[str]]]] = []


def _walked_now(root: Path) -> Iterator[tuple[Callable[[], int], str, list[os.DirEntry[str]]]]:
    """walk_listings(root), each dir's fd as a call (_reopened's form)."""
    for fd, prefix, listing in walk_listings(root):

        def dir_fd(fd: int = fd) -> int:
            return fd

        yield dir_fd, prefix, listing


def _reopened(
    root: Path, listings: list[tuple[str, list[os.DirEntry[str]]]]
) -> Iterator[tuple[Callable[[], int], str, list[os.DirEntry[str]]]]:
    """`listings` with, for each dir, a call that opens it (once, below the root's fd,
    following no symlink, as walk_listings entered it) for a file to read or a link."""
    root_fd = open_dir(root)
    try:
        for prefix, listing in listings:
            opened: list[int] = []

            def dir_fd(prefix: str = prefix, opened: list[int] = opened) -> int:
                if not opened:
                    opened.append(open_below(root_fd, os.fsencode(prefix)))
                return opened[0]

            try:
                yield dir_fd, prefix, listing
            finally:
                for fd in opened:
                    os.close(fd)
    finally:
        os.close(root_fd)


class _Signature:
    """A context's signature, a dir at a time: its entries' stat fields packed by marshal
    (C speed: a comprehension per dir, not a Python step per field) and hashed; and the
    newest ctime or mtime among them, for the racy rule."""

    def __init__(self, ignore_text: str) -> None:
        self._hash = hashlib.sha256(marshal.dumps((SNAPSHOT_VERSION, ignore_text)))
        self.newest = 0

    def add(self, prefix: str, listing: list[os.DirEntry[str]]) -> None:
        """A dir's entries (an entry's lstat is cached by it: the walk's own, if it took it)."""
        stats = [e.stat(follow_symlinks=False) for e in listing]
        rows = [
            (e.name, s.st_mode, s.st_size, s.st_mtime_ns, s.st_ino, s.st_ctime_ns)
            for e, s in zip(listing, stats, strict=True)
        ]
        self._hash.update(marshal.dumps((prefix, rows)))
        if stats:
            self.newest = max(self.newest, max(map(_CTIME, stats)), max(map(_MTIME, stats)))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def copy_digest(items: list[CopyItem]) -> str:
    """One digest for what a COPY writes: paths, kinds, modes and contents; no mtimes."""
    h = hashlib.sha256()
    # A line per item, hashed DIGEST_BATCH lines at a time (one join, encode and update per
    # batch: a cached COPY of a big context still digests every entry; 10.5 -> 8 ms for
    # 5,058). surrogateescape: a name that is not UTF-8 hashes as its own bytes.
    for start in range(0, len(items), DIGEST_BATCH):
        # %-formatting: faster here than an f-string with its `:o` spec.
        lines = [
            "%s\0%s\0%o\0%s\n" % (item.target, e.kind, e.mode, e.digest)  # noqa: UP031
            for item in items[start : start + DIGEST_BATCH]
            for e in (item.entry,)
        ]
        h.update("".join(lines).encode("utf-8", "surrogateescape"))
    return h.hexdigest()
