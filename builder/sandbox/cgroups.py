"""A sandbox's cgroup: made before the sandbox starts, joined by its supervisor (so every
process of the container is in it), read for OOM kills and removed when the run ends.

Detects what the machine has, controller by controller, from /proc/self/mountinfo: a v1
hierarchy that holds the controller, else the unified (v2) hierarchy if the controller is
enabled there. A hybrid machine (v1 controllers plus a v2 mount with none) uses v1. The
cgroup of a container is PARENT/NAME in each hierarchy it needs (docker's cgroupfs layout,
PARENT being --cgroup-parent, default /builder); NAME starts with the caller's pid, so a
cgroup left by a killed caller (empty, its owner gone) is removed by the next sandbox that
makes one under the same parent. A build's RUN steps each get a cgroup of their own, as
docker's do, made while the step before runs (`Spare`: 1-3 ms off each step's path).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox.ahead import Ahead
from builder.sandbox.limits import Limits

_V1, _V2 = 1, 2
_CPU_PERIOD_US = 100_000
# Errors that mean "this user or machine cannot make cgroups here" (not a bad limit).
_UNAVAILABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT)


@dataclass(frozen=True)
class Hierarchy:
    mount: str
    version: int
    controllers: frozenset[str]


class Unavailable(SandboxError):
    """No cgroup can be made for a controller here (no hierarchy, or no permission)."""


def hierarchies(mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    found: list[Hierarchy] = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            mount = fields[4].replace("\\040", " ")
            if fstype == "cgroup":
                names = {o for o in options.split(",") if o not in ("rw", "ro")}
                found.append(Hierarchy(mount, _V1, frozenset(n for n in names if "=" not in n)))
            elif fstype == "cgroup2":
                try:
                    with open(f"{mount}/cgroup.controllers", encoding="ascii") as c:
                        controllers = frozenset(c.read().split())
                except OSError:
                    controllers = frozenset()
                found.append(Hierarchy(mount, _V2, controllers))
    return found


Mounted = tuple[str, int, frozenset[str]]  # mount point, version, super options


def mounted() -> list[Mounted]:
    """Each cgroup hierarchy mounted here, with its super options as they are (a named
    hierarchy's `name=...` among them), for procs_files."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                options = frozenset(fields[sep + 3].split(","))
                version = _V2 if fstype == "cgroup2" else _V1
                found.append((fields[4].replace("\\040", " "), version, options))
    return found


def procs_files(theirs: str, ours: str, mounts: list[Mounted] | None = None) -> list[str]:
    """The cgroup.procs file of each cgroup of `theirs` (a /proc/PID/cgroup text) that is
    not one of `ours` (a process moves there by writing its pid: how a warm server's child
    and a launched supervisor join their caller's cgroups); a hierarchy not mounted here
    is left out."""
    mine = set(ours.splitlines())
    other = [line for line in theirs.splitlines() if line not in mine]
    if other and mounts is None:
        mounts = mounted()
    found = []
    for line in other:
        hierarchy, controllers, path = line.split(":", 2)
        names = frozenset(controllers.split(",")) if hierarchy != "0" else frozenset()
        for mount, version, options in mounts or ():
            if (hierarchy == "0") == (version == _V2) and names <= options:
                found.append(f"{mount}{path.rstrip('/')}/cgroup.procs")
                break
    return found


def move_here(dirs: list[str]) -> None:
    """Move the calling process into each cgroup dir of `dirs` (OSError as the kernel says).

    A single-threaded caller (a fresh fork: pid 1, a supervisor, the warm server's child)
    moves its one thread through a v1 hierarchy's `tasks`: moving a whole process
    (cgroup.procs) write-locks the kernel's global threadgroup rwsem, which waits for an
    RCU grace period (7-14 ms here, on every RUN step's path: the build's default pids
    limit gives each a cgroup), while the kernel moves the caller's own thread without
    that lock (0.5 ms). v2 has no `tasks`; a caller with threads moves them all."""
    alone = os.stat("/proc/self/task").st_nlink == 3  # ".", ".." and our one thread
    for path in dirs:
        try:  # (no O_CREAT: a v2 dir has no `tasks`, and refuses a create with EACCES)
            fd = os.open(f"{path}/tasks" if alone else f"{path}/cgroup.procs", os.O_WRONLY)
        except FileNotFoundError:
            fd = os.open(f"{path}/cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _needed(limits: Limits) -> list[str]:
    wanted = [
        ("memory", limits.memory is not None),
        ("cpu", limits.cpus is not None),
        ("pids", limits.pids is not None),
    ]
    return [name for name, asked in wanted if asked]


def _choose(controller: str, found: list[Hierarchy]) -> Hierarchy:
    for version in (_V1, _V2):  # a controller bound to a v1 hierarchy is absent from v2
        for h in found:
            if h.version == version and controller in h.controllers:
                return h
    raise Unavailable(f"cgroups: no {controller} controller on this machine")


class Cgroup:
    """One container's cgroup dirs (one per hierarchy used) and the files that limit it."""

    def __init__(self, limits: Limits, found: list[Hierarchy] | None = None) -> None:
        self.limits = limits
        found = hierarchies() if found is None else found
        self.by_controller = {c: _choose(c, found) for c in _needed(limits)}
        import secrets  # only with limits: `run`'s start-up does not import it

        self.name = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.dirs: dict[str, str] = {}  # hierarchy mount -> the container's dir in it

    def dir_of(self, controller: str) -> str:
        return self.dirs[self.by_controller[controller].mount]

    # ---- lifecycle -------------------------------------------------------------------

    def create(self) -> None:
        """Make the dirs and write the limits; on any failure remove what was made."""
        try:
            for h in {h.mount: h for h in self.by_controller.values()}.values():
                parent = h.mount + "/" + self.limits.parent.strip("/")
                _make_parent(h, parent, self._controllers_in(h))
                _sweep(parent)
                path = f"{parent}/{self.name}"
                os.mkdir(path, 0o755)
                self.dirs[h.mount] = path
            self._write_limits()
        except OSError as err:
            self.remove()
            if err.errno in _UNAVAILABLE:
                raise Unavailable(
                    f"cgroups: cannot make a cgroup under {err.filename or self.limits.parent}:"
                    f" {err.strerror} (resource limits need root or a delegated cgroup)"
                ) from None
            raise SandboxError(f"cgroups: {err.strerror}: {err.filename}") from None
        except BaseException:
            self.remove()
            raise

    def _controllers_in(self, h: Hierarchy) -> list[str]:
        return [c for c, used in self.by_controller.items() if used.mount == h.mount]

    def join(self) -> None:
        """Move the calling process (and so all it will fork) into the cgroup."""
        move_here(list(self.dirs.values()))

    def oom_kills(self) -> int:
        """How many processes the OOM killer took in the cgroup (0 without a memory limit)."""
        if "memory" not in self.by_controller or not self.dirs:
            return 0
        h = self.by_controller["memory"]
        name = "memory.oom_control" if h.version == _V1 else "memory.events"
        try:
            with open(f"{self.dir_of('memory')}/{name}", encoding="ascii") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            pass
        return 0

    def remove(self) -> None:
        """rmdir each dir; a dir whose last processes are still exiting gets a moment."""
        for mount, path in list(self.dirs.items()):
            for attempt in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or attempt == 49:
                        break  # left for the next sweep under the same parent
                    time.sleep(0.01)
            del self.dirs[mount]

    # ---- limits ----------------------------------------------------------------------

    def _write_limits(self) -> None:
        for controller, h in self.by_controller.items():
            for fname, value in self._settings(controller, h.version):
                path = f"{self.dir_of(controller)}/{fname}"
                try:
                    with open(path, "w", encoding="ascii") as f:
                        f.write(value)
                except FileNotFoundError:
                    if fname == "memory.memsw.limit_in_bytes":
                        continue  # a kernel without swap accounting: docker ignores it too
                    raise
                except OSError as err:
                    raise SandboxError(
                        f"cgroups: the kernel refused {fname} = {value}: {err.strerror}"
                    ) from None

    def _settings(self, controller: str, version: int) -> list[tuple[str, str]]:
        lim = self.limits
        if controller == "pids":
            return [("pids.max", str(lim.pids))]
        if controller == "cpu":
            assert lim.cpus is not None
            quota = int(lim.cpus * _CPU_PERIOD_US)  # the kernel refuses < 1 ms: its words
            if version == _V1:
                return [
                    ("cpu.cfs_period_us", str(_CPU_PERIOD_US)),
                    ("cpu.cfs_quota_us", str(quota)),
                ]
            return [("cpu.max", f"{quota} {_CPU_PERIOD_US}")]
        assert lim.memory is not None
        total = lim.swap_total()
        if version == _V1:
            return [
                ("memory.limit_in_bytes", str(lim.memory)),
                ("memory.memsw.limit_in_bytes", str(total if total is not None else -1)),
            ]
        swap = "max" if total is None else str(total - lim.memory)
        return [("memory.max", str(lim.memory)), ("memory.swap.max", swap)]


def _make_parent(h: Hierarchy, parent: str, controllers: list[str]) -> None:
    """PARENT and its ancestors; on v2, each level passes the controllers down."""
    if h.version == _V1:
        os.makedirs(parent, 0o755, exist_ok=True)
        return
    level = h.mount
    enable = " ".join(f"+{c}" for c in controllers)
    for part in parent[len(h.mount) :].strip("/").split("/"):
        with open(f"{level}/cgroup.subtree_control", "w", encoding="ascii") as f:
            f.write(enable)
        level = f"{level}/{part}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(level, 0o755)
    with open(f"{level}/cgroup.subtree_control", "w", encoding="ascii") as f:
        f.write(enable)


def _sweep(parent: str) -> None:
    """Remove cgroups under PARENT that a killed caller left: empty, their owner gone."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        owner, dash, _ = name.partition("-")
        if not dash or not owner.isdigit() or os.path.exists(f"/proc/{owner}"):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(f"{parent}/{name}")  # fails (EBUSY) while a process is in it


def made_for(limits: Limits) -> Cgroup | None:
    """A new cgroup with `limits` written, or None when it has only best-effort ones that
    this machine or user cannot apply."""
    try:
        cgroup = Cgroup(limits)
        cgroup.create()
    except Unavailable:
        if limits.best_effort:
            return None
        raise
    return cgroup


def _drop(cgroup: Cgroup | None) -> None:
    if cgroup is not None:
        cgroup.remove()


class Spare(Ahead["Cgroup | None"]):
    """Hands out cgroups made with `limits` (made_for), each made ahead, by a thread, while
    the one handed out before is in use; the taker's sandbox removes it."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(lambda: made_for(limits), _drop, "cgroup")
