"""The value that describes one sandboxed process: its root, command, ids, mounts and stdio.

RUN steps and `builder run` build this value differently and execute it the same way.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from builder.errors import SandboxError
from builder.record import dataclass, field
from builder.sandbox.limits import Limits
from builder.sandbox.security import DOCKER_DEFAULT, Security

if TYPE_CHECKING:  # a cached build loads this module: not the parsers behind these
    from builder.sandbox.cgroups import Cgroup
    from builder.sandbox.hosts import HostEntry
    from builder.sandbox.publish import PortMapping


class ProcessStartError(SandboxError):
    """The process cannot start as its spec asks (its user is not in the image, its working
    directory cannot be entered): the spec's fault, not the kernel's."""


class ExecFailed(SandboxError):
    """The command could not be executed (docker's codes: 127 not found, 126 not
    executable), reported to the caller before anything ran, as docker run reports its
    runtime's exec error: the caller exits with the code, and `run -d` fails at once."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


# "private": a network namespace of its own with outbound access through a user-mode helper
# (docker's default); "none": a namespace with loopback only; "host": the host's network.
NetworkMode = Literal["none", "host", "private"]
NETWORK_MODES: Final = ("none", "host", "private")

# "host": as root, the identity map (container root is host root, layers as they are);
# "auto": container root is an unprivileged host range of its own (subids, idmapped).
UsernsMode = Literal["host", "auto"]
USERNS_MODES: Final = ("host", "auto")

# Pass as stdin/stdout/stderr to connect that stream to /dev/null (the value subprocess uses).
DEVNULL: Final = -3


@dataclass(frozen=True)
class OverlayRoot:
    """An overlayfs root. `lowers` are bottom-first (base first); the upper dir IS the diff."""

    lowers: tuple[Path, ...]
    upper: Path
    work: Path
    # Mounted with overlayfs' "volatile": no sync of the upper file system (the unmount
    # otherwise syncs the whole of it: 6-20 ms a run on this machine, over a second on a
    # busy disk). The kernel then marks the work dir, which can never be mounted again.
    # Podman does the same for --rm; a build step's upper is synced by the store instead.
    volatile: bool = False
    # The upper and work dirs are thrown away after this one mount (`run --rm`): the
    # sandbox leaves its mount-point stubs in the upper dir.
    discarded: bool = False
    # Served by fuse-overlayfs instead of the kernel's overlayfs (sandbox/fuse.py), for
    # where the kernel's cannot be mounted; the upper dir is then in its form.
    fuse: bool = False
    # Where the store keeps the skeleton of mount points (/proc, /sys, /dev, the /etc
    # files) that goes below the lowers, so that no run makes them in its upper dir
    # (skeleton.py); on the lowers' file system. None: stubs made and removed per run.
    skeleton: Path | None = None


@dataclass(frozen=True)
class DirRoot:
    """A plain directory used as the root (bind-mounted, optionally read-only)."""

    path: Path
    readonly: bool = False


@dataclass(frozen=True)
class Mount:
    """An extra mount inside the root: a bind of a host path, a fresh tmpfs, or a "file"
    holding `data` (a secret): written to a tmpfs that exists only in the sandbox's mount
    namespaces, so its bytes never reach a disk and vanish with the sandbox, killed or not."""

    target: str
    kind: Literal["bind", "tmpfs", "file"]
    source: Path | None = None
    readonly: bool = True
    data: bytes | None = field(default=None, repr=False)  # kind "file"; never shown
    mode: int = 0o400  # kind "file": its mode and owner
    uid: int = 0
    gid: int = 0
    # tmpfs only: mount data as docker's --tmpfs takes it ("size=64m,mode=755"); the
    # default mode is 1777, as docker's.
    options: str = ""


@dataclass(frozen=True)
class SandboxSpec:
    root: OverlayRoot | DirRoot
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = "builder"
    network: NetworkMode = "none"
    # With network "none": the fd of a namespace made ahead (netns.make_none: lo up, low
    # ports open) to join instead of making one on the sandbox's path. Host root only.
    netns: int | None = None
    mounts: tuple[Mount, ...] = ()
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    # Where the sandbox keeps its per-run files (the mount point of the root, /etc/hosts...):
    # an empty dir the caller made and removes, under the store's tmp/, so that a killed
    # run's leftovers are found and swept there. None: a new dir in the system's temp dir,
    # removed after the run (nothing sweeps it if the caller is killed).
    state_dir: Path | None = None
    # Resource limits (cgroups); None or empty: none.
    limits: Limits | None = None
    # The cgroup made ahead with `limits` written (cgroups.Spare), which the run joins and
    # removes; None: the run makes its own (if `limits` asks for one).
    cgroup: Cgroup | None = None
    # Capabilities, seccomp and no_new_privs of the process run (not of `call`'s function,
    # our own code): Docker's defaults unless the caller asks otherwise.
    security: Security = DOCKER_DEFAULT
    # Where compiled seccomp programs are kept across runs (the store's; seccomp_cache.py).
    # None: compiled once per process.
    seccomp_cache: Path | None = None
    # `builder run`'s extras (RUN steps leave them at their defaults):
    tty: bool = False  # stdin is a pty's slave: pid 1 makes it its controlling terminal
    init: bool = False  # pid 1 is a reaper that forwards signals to the command (--init)
    readonly_root: bool = False  # the root (not /dev, /proc or the mounts) is read-only
    # After a forwarded SIGINT/SIGTERM/SIGHUP, SIGKILL pid 1 this long after (None: 3 s).
    stop_timeout: float | None = None
    # How a command that cannot be executed is reported on stderr: "builder" for a RUN
    # step's log, "docker" (`error: exec: "x": executable file not found in $PATH`) for run.
    exec_errors: Literal["builder", "docker"] = "builder"
    extra_hosts: tuple[HostEntry, ...] = ()  # --add-host: more lines in /etc/hosts
    ports: tuple[PortMapping, ...] = ()  # -p: forwarded from the host (private network only)
    userns: UsernsMode = "host"  # --userns
    # With userns "auto": the binds show their files with the ids they have as seen by
    # container root (a RUN's cache, secret and context mounts, which must work as without
    # the range), or False: as the host has them, a root-owned file as nobody (`run -v`,
    # podman's default without its `idmap` option).
    idmap_binds: bool = True

    def validate(self, *, need_argv: bool = True) -> None:
        """Reject what the kernel would reject later with a less helpful message."""
        if need_argv and not self.argv:
            raise SandboxError("sandbox: empty command")
        if any("\0" in a for a in self.argv):
            raise SandboxError("sandbox: NUL byte in the command")
        for item in self.env:
            if "=" not in item or item.startswith("=") or "\0" in item:
                raise SandboxError(f"sandbox: bad environment entry {item!r} (want K=V)")
        if not self.cwd.startswith("/"):
            raise SandboxError(f"sandbox: working directory {self.cwd!r} is not absolute")
        if not self.hostname or len(self.hostname.encode()) > 64 or "\0" in self.hostname:
            raise SandboxError(f"sandbox: bad hostname {self.hostname!r}")
        if self.network not in NETWORK_MODES:
            raise SandboxError(f"sandbox: unknown network mode {self.network!r}")
        if self.userns not in USERNS_MODES:
            raise SandboxError(f"sandbox: unknown user namespace mode {self.userns!r}")
        if self.netns is not None and self.network != "none":
            raise SandboxError("sandbox: a namespace made ahead is for network none only")
        if self.ports and self.network != "private":
            raise SandboxError("sandbox: ports are published on the private network only")
        for m in self.mounts:
            if not m.target.startswith("/") or normalize(m.target) == "/":
                raise SandboxError(f"sandbox: bad mount target {m.target!r}")
            if m.kind == "bind" and m.source is None:
                raise SandboxError(f"sandbox: bind mount on {m.target} has no source")
            if m.kind == "file" and m.data is None:
                raise SandboxError(f"sandbox: file mount on {m.target} has no data")
            if m.kind not in ("bind", "tmpfs", "file"):
                raise SandboxError(f"sandbox: unknown mount kind {m.kind!r}")
            if "\0" in m.options or (m.options and m.kind != "tmpfs"):
                raise SandboxError(f"sandbox: bad options for the mount on {m.target}")
        if self.state_dir is not None and not self.state_dir.is_absolute():
            raise SandboxError(f"sandbox: state dir {self.state_dir} is not absolute")
        root = self.root
        if isinstance(root, OverlayRoot) and len(root.lowers) > 500:
            # The kernel's overlay stack limit (OVL_MAX_STACK).
            raise SandboxError(f"sandbox: {len(root.lowers)} layers exceed overlayfs' 500")


def normalize(target: str) -> str:
    """An absolute, lexically clean path ('..' cannot climb above '/')."""
    return posixpath.normpath("/" + target).replace("//", "/")
