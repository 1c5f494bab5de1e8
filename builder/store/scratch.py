"""root/tmp: scratch space on the store's filesystem, so finished work is renamed into place.

Every entry's name says which process made it: `PREFIX-PID-START-RANDOM`, START being the
process's start time (clock ticks after boot, field 22 of /proc/PID/stat). A pid alone is
not enough: after a kill, the pid may be reused by an unrelated live process, which would
keep the dead one's work forever. An entry whose owner is gone (no such process, another
process under its pid, or a zombie) is removed by the next command that takes the store's
update lock (`Store.sweep_scratch`) and by gc. Names of the older form `PREFIX-PID-RANDOM`
are judged by the pid alone.

What a command is done with goes through `discard`: a background thread removes it while
the command goes on (a build step's work dir and its sandbox's state dir: their rmdirs took
5-10 ms a step on this ext4 with online discard); the thread waits a second for more
before it ends (or until `settle`), and a forked child starts its own. `settle` waits for
it; a process that
exits first leaves owner-tagged entries the next sweep removes.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from builder.layer.tree import remove_tree
from builder.store.removal import remove
from builder.store.space import writing

_OWNER = re.compile(r"-(\d+)-(\d+)-[^-]*$")
_OLD_OWNER = re.compile(r"-(\d+)-[^-]*$")


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot), or None if there is no live
    process of that pid (a zombie has finished: it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # state: zombie, dead
        return None
    return int(fields[19])  # field 22: starttime


_tag: tuple[int, str] | None = None  # (pid, tag): this process's, once read


def owner_tag() -> str:
    """`PID-START` of this process, as entry names carry it. Read from /proc once per
    process (a build names 3-5 scratch entries a step; the read was 0.15-0.3 ms each),
    again after a fork: the child, a server's build, has a pid and start of its own."""
    global _tag
    pid = os.getpid()
    if _tag is None or _tag[0] != pid:
        _tag = (pid, f"{pid}-{process_start(pid) or 0}")
    return _tag[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(name: str) -> bool | None:
    """Whether the process that made the entry `name` is gone; None if the name says no
    owner."""
    m = _OWNER.search(name)
    if m is not None:
        pid, start = int(m.group(1)), int(m.group(2))
        return process_start(pid) != start
    m = _OLD_OWNER.search(name)
    if m is not None:
        return not _alive(int(m.group(1)))
    return None


# How long the remover waits for more before its thread ends: a build discards a few dirs
# a step, and starting a thread each time cost 0.3-2 ms of the step's own thread here
# (Thread.start waits until the new thread runs, which a busy machine delays).
_LINGER = 1.0


class Scratch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._doomed: list[Path] = []  # handed to `discard`, not yet removed
        self._wake = threading.Condition()
        self._remover: tuple[threading.Thread, int] | None = None  # and the pid it runs in

    def discard(self, path: Path) -> None:
        """Remove `path` (one of ours, under tmp/) in the background."""
        with self._wake:
            self._doomed.append(path)
            # (A forked child, a server's build, has no thread of its parent's.)
            if self._remover is not None and self._remover[1] == os.getpid():
                self._wake.notify_all()
                return
            thread = threading.Thread(
                target=self._remove_doomed, name="scratch-remover", daemon=True
            )
            self._remover = (thread, os.getpid())
            thread.start()

    def settle(self) -> None:
        """Return once everything discarded so far is removed, and the remover's thread has
        ended: a process whose only thread is left exits without the interpreter's
        teardown (cli/main), 35-40 ms."""
        with self._wake:
            self._wake.wait_for(lambda: not self._doomed)
            remover, self._remover = self._remover, None
            self._wake.notify_all()
        if remover is not None and remover[1] == os.getpid():
            remover[0].join()

    def _remove_doomed(self) -> None:
        me = threading.current_thread()

        def dismissed() -> bool:  # by settle(), or replaced by a thread of a later discard
            return self._remover is None or self._remover[0] is not me

        while True:
            with self._wake:
                # An entry stays in _doomed until it is removed: settle() waits for that.
                if not self._doomed:
                    self._wake.wait_for(lambda: bool(self._doomed) or dismissed(), _LINGER)
                if dismissed():
                    return
                if not self._doomed:  # nothing came: the next discard starts a thread
                    self._remover = None
                    return
                path = self._doomed[0]
            remove_tree(path, ignore_errors=True)  # what stays is swept by its owner tag
            with self._wake:
                self._doomed.pop(0)
                self._wake.notify_all()

    def new_dir(self, prefix: str) -> Path:
        """A new private dir (0700), named with our pid and start time so a sweep can tell
        it is live. tempfile.mkdtemp's loop, without importing tempfile (shutil, random,
        bz2, lzma): `run` makes two of these on its way to the container's start."""
        stem = f"{prefix}-{owner_tag()}-"
        with writing(f"the {prefix} dir", self.path):
            while True:
                path = self.path / (stem + os.urandom(6).hex())
                try:
                    os.mkdir(path, 0o700)
                except FileExistsError:
                    continue
                return path

    def new_name(self, prefix: str) -> Path:
        """A fresh unused path (nothing is created there) for a file the caller opens
        exclusively itself."""
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f"{prefix}-{owner_tag()}-", dir=self.path)
        os.close(fd)
        os.unlink(name)
        return Path(name)

    def sweep(self, *, ownerless: bool = True) -> int:
        """Remove what gone processes left; returns the bytes freed. `ownerless` entries
        (no owner in their name: nothing of ours makes them) go too, which only gc, when
        nothing else uses the store, may do."""
        freed = 0
        try:
            entries = list(self.path.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            gone = owner_gone(entry.name)
            if gone or (gone is None and ownerless):
                freed += remove(entry)
        return freed
