"""The seam between the steps and the sandbox: what a step asks of "something that runs
work in an image's root", and the real thing that does it with namespaces and overlayfs.

A step needs two things. RUN runs a process; COPY, COPY --from, ADD and WORKDIR run one of
our own Python writers as root inside the image. Both get a root made of the parent's
layer dirs (read-only lowers) and a fresh upper dir: whatever the work changes lands in the
upper dir, which the step then turns into its layer. Steps reach the sandbox only through an
`Executor` in their StepContext, so tests can hand them one that needs no root.

The roots and mounts are the sandbox's own values (`builder.sandbox.spec`, plain
dataclasses); the sandbox's machinery is imported only when work runs, so a fully cached
build never loads it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from builder.layer.tree import remove_tree
from builder.record import dataclass, replace
from builder.sandbox.limits import Limits
from builder.sandbox.spec import DirRoot, Mount, NetworkMode, OverlayRoot, UsernsMode

if TYPE_CHECKING:
    from builder.engine.stopper import Stopper
    from builder.sandbox.cgroups import Cgroup
    from builder.sandbox.cgroups import Spare as CgroupSpare
    from builder.sandbox.hosts import HostEntry
    from builder.sandbox.netns import Spare
    from builder.sandbox.snapshotter import Snapshotter

__all__ = ["Executor", "InRoot", "Mount", "OverlayRoot", "Process", "SandboxExecutor"]

# An in-root writer: called with the path at which it reaches the image's root ("/": its
# root is the image's, in a thread of ours or the sandbox); returns an exit status. Its
# messages go through copier.in_root, to the step's output.
InRoot = Callable[[str], int]


@dataclass(frozen=True)
class Process:
    """A RUN's process, as the image config and the step's flags define it."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str  # "" for root; "name", "uid", "name:group" as USER wrote it
    network: NetworkMode
    mounts: tuple[Mount, ...] = ()
    # RUN --security=insecure (the build allowed security.insecure): every capability and
    # no seccomp filter; else Docker's defaults.
    insecure: bool = False
    extra_hosts: tuple[HostEntry, ...] = ()  # --add-host


class Executor(Protocol):
    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        """Run PROCESS in ROOT with stdin on /dev/null and stdout+stderr on the fd OUTPUT;
        its exit status (128+N when killed by signal N)."""
        ...

    def call(
        self, root: OverlayRoot, label: str, fn: InRoot, output: int, keep_fds: tuple[int, ...] = ()
    ) -> int:
        """Run FN as uid 0 in ROOT (cwd "/", its messages on OUTPUT, the fds KEEP_FDS still
        open); its return value is the status. LABEL names the work (its argv[0] in the
        sandbox)."""
        ...


class SandboxExecutor:
    """The real executor: Linux namespaces on an overlayfs of the layer dirs.

    `new_dir` (the store's tmp_dir) makes the sandbox's per-run dir under the store, named
    for this process, so that a killed build's is swept there; without it, the system's
    temp dir; `discard_dir` (the store's scratch.discard) removes it in the background.
    Our in-root writers (`call`) run in a thread of ours whose root is the overlay's
    (sandbox/inthread): no fork, no sandbox, where that can be set up (host root, the
    kernel's overlayfs); else, or with `in_thread` False, in the sandbox.
    `limits` are every RUN process's resource limits (our in-root writers have none),
    `userns` its user namespace (our in-root writers run as root: their code is ours, and
    what they write is the same either way). `seccomp_cache`: where compiled
    seccomp programs are kept (the store's), so a build does not compile Docker's profile
    again (sandbox/seccomp_cache.py). A `stopper` can kill every running RUN process (a
    build whose stages run at once stops them all when one fails). `snapshotter` says how a
    root is made (sandbox/snapshotter.py); without it, overlayfs. A RUN does not wait for
    its network helper to exit (15-20 ms, sandbox/slirp.py): a later RUN reaps it, and
    `close` reaps the rest, so a build leaves no helper behind, not even a zombie."""

    def __init__(
        self,
        new_dir: Callable[[str], Path] | None = None,
        limits: Limits | None = None,
        userns: UsernsMode = "host",
        seccomp_cache: Path | None = None,
        stopper: Stopper | None = None,
        snapshotter: Callable[[], Snapshotter] | None = None,
        discard_dir: Callable[[Path], None] | None = None,
        in_thread: bool = True,
    ) -> None:
        self._new_dir = new_dir
        self._discard_dir = discard_dir
        self._limits = limits
        self._userns = userns
        self._seccomp_cache = seccomp_cache
        self._stopper = stopper
        self._snapshotter = snapshotter
        self._reapers: list[int] = []  # RUN network helpers killed, not yet reaped
        self._spare: Spare | None = None  # `none` network namespaces made ahead
        self._cgroups: CgroupSpare | None = None  # the limits' cgroups made ahead
        self._own_netns = False  # not host root: each sandbox makes its own
        # Our in-root writers run in a thread of ours (sandbox/inthread) where it can be set
        # up; False once it could not be here (or not asked for): the sandbox runs them.
        self._in_thread: bool | None = None if in_thread else False
        self._point: Path | None = None  # their mount point (_mount_point)
        self._making_point = threading.Lock()

    def close(self) -> None:
        """Wait until every RUN's network helper has been reaped, drop the network
        namespace made ahead for a next step, and remove the writers' mount point.
        Idempotent."""
        if self._reapers:  # a build that ran nothing imports nothing here
            from builder.sandbox.slirp import settle

            settle(self._reapers)
        if self._spare is not None:
            self._spare.close()
        if self._cgroups is not None:
            self._cgroups.close()
        point, self._point = self._point, None
        if point is not None:  # (no thread of ours can be in it: each call waits for its own)
            if self._discard_dir is not None:
                self._discard_dir(point)
            else:
                with contextlib.suppress(OSError):
                    point.rmdir()

    @contextlib.contextmanager
    def _netns(self, network: NetworkMode) -> Iterator[int | None]:
        """With network "none", a namespace made while the step before ran (sandbox/netns:
        making one on the step's path took 1-100 ms); host root only, else None (the
        sandbox makes its own)."""
        if self._spare is None and not self._own_netns and network == "none":
            from builder.sandbox.idmap import in_initial_user_namespace
            from builder.sandbox.netns import Spare

            if os.geteuid() == 0 and in_initial_user_namespace() and self._userns == "host":
                self._spare = Spare()
            else:
                self._own_netns = True
        if self._spare is None or network != "none":
            yield None
            return
        fd = self._spare.take()
        try:
            yield fd
        finally:
            os.close(fd)

    def _begin_ahead(self) -> None:
        """Have the next RUN's cgroup made while our writer runs, which needs none (as a
        RUN begins it once its command runs); and its `none` network namespace, if a RUN
        took one already: a build's RUN steps mostly have the private network, which
        takes none (the sandbox's writers took one each, for nothing)."""
        if self._limits is not None and self._limits.any():
            self._make_cgroups(self._limits)
        for spare in (self._spare, self._cgroups):
            if spare is not None:
                spare.begin()

    def _make_cgroups(self, limits: Limits) -> CgroupSpare:
        """The maker of the limits' cgroups ahead."""
        if self._cgroups is None:
            from builder.sandbox.cgroups import Spare as CgroupSpare

            self._cgroups = CgroupSpare(limits)
        return self._cgroups

    @contextlib.contextmanager
    def _cgroup(self) -> Iterator[Cgroup | None]:
        """With limits, a cgroup made while the step before ran (1-3 ms off the step's
        path), which the sandbox joins; None without limits, or with best-effort ones this
        machine cannot apply."""
        if self._limits is None or not self._limits.any():
            yield None
            return
        cgroup = self._make_cgroups(self._limits).take()
        try:
            yield cgroup
        finally:
            if cgroup is not None:  # (the sandbox removed it, unless it never started)
                cgroup.remove()

    @contextlib.contextmanager
    def _root(self, root: OverlayRoot) -> Iterator[OverlayRoot | DirRoot]:
        """The overlay as it is; served by fuse-overlayfs, its upper dir put in overlayfs's
        form once the work is done; or (the "native" snapshotter) a copy of its lowers whose
        changes land in its upper dir once the work is done."""
        snapshotter = "overlayfs" if self._snapshotter is None else self._snapshotter()
        if snapshotter == "overlayfs":
            yield root
            return
        from builder.layer.snapshot import snapshotted

        with snapshotted(snapshotter, root.lowers, root.upper, root.work) as copy:
            yield DirRoot(copy) if copy is not None else replace(root, fuse=True)

    @contextlib.contextmanager
    def _state_dir(self) -> Iterator[Path | None]:
        if self._new_dir is None:
            yield None
            return
        state = self._new_dir("sandbox")
        try:
            yield state
        finally:
            if self._discard_dir is None:
                remove_tree(state, ignore_errors=True)
            else:
                self._discard_dir(state)

    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        with (
            self._state_dir() as state,
            self._root(root) as made,
            self._netns(process.network) as netns,
            self._cgroup() as cgroup,
        ):
            return self._run(made, process, output, state, netns, cgroup)

    def _run(
        self,
        root: OverlayRoot | DirRoot,
        process: Process,
        output: int,
        state: Path | None,
        netns: int | None,
        cgroup: Cgroup | None,
    ) -> int:
        from builder import sandbox
        from builder.sandbox.security import DOCKER_DEFAULT, INSECURE

        spec = sandbox.SandboxSpec(
            root=root,
            argv=process.argv,
            env=process.env,
            cwd=process.cwd,
            user=process.user,
            network=process.network,
            netns=netns,
            stdin=sandbox.DEVNULL,
            stdout=output,
            stderr=output,
            mounts=process.mounts,
            state_dir=state,
            limits=self._limits if cgroup is not None else None,
            cgroup=cgroup,
            security=INSECURE if process.insecure else DOCKER_DEFAULT,
            seccomp_cache=self._seccomp_cache,
            extra_hosts=process.extra_hosts,
            userns=self._userns,
        )
        from builder.sandbox.slirp import reaping_into

        with reaping_into(self._reapers), self._watching() as started:
            return sandbox.run(spec, started=started, ahead=True)

    @contextlib.contextmanager
    def _watching(self) -> Iterator[Callable[[int], None]]:
        """The `started` callback of a RUN: once its command runs (this thread waits then),
        the next step's namespace and cgroup are made; and the stopper can kill it."""

        with contextlib.ExitStack() as stack:
            stopper = self._stopper
            watched = None if stopper is None else stack.enter_context(stopper.watching())

            def begin(pid: int) -> None:
                for spare in (self._spare, self._cgroups):
                    if spare is not None:
                        spare.begin()
                if watched is not None:
                    watched(pid)

            yield begin

    def call(
        self, root: OverlayRoot, label: str, fn: InRoot, output: int, keep_fds: tuple[int, ...] = ()
    ) -> int:
        with self._root(root) as made:
            if self._in_thread is not False:
                from builder.sandbox import inthread

                if inthread.available(made):
                    assert isinstance(made, OverlayRoot)
                    try:
                        return self._call_in_thread(made, fn, output)
                    except inthread.Unavailable:
                        self._in_thread = False  # (and the sandbox does it, this once on)
            with self._state_dir() as state:
                return self._call_in_sandbox(made, label, fn, output, keep_fds, state)

    def _call_in_thread(self, root: OverlayRoot, fn: InRoot, output: int) -> int:
        """FN in a thread of ours whose root is ROOT's (sandbox/inthread): no fork, no
        sandbox. The overlay is mounted on the mount point, seen by that thread alone."""
        from builder.engine.copier import messages_to
        from builder.sandbox import inthread

        def work() -> int:
            with messages_to(output):
                return fn("/")

        self._begin_ahead()
        return inthread.call(root, str(self._mount_point()), work, output)

    def _mount_point(self) -> Path:
        """The in-root writers' mount point: one empty dir for all of them, at once too
        (each mounts in a namespace of its thread's own), removed by close()."""
        with self._making_point:
            if self._point is None:
                if self._new_dir is not None:
                    self._point = self._new_dir("in-root")
                else:
                    import tempfile

                    self._point = Path(tempfile.mkdtemp(prefix="builder-in-root-"))
            return self._point

    def _call_in_sandbox(
        self,
        made: OverlayRoot | DirRoot,
        label: str,
        fn: InRoot,
        output: int,
        keep_fds: tuple[int, ...],
        state: Path | None,
    ) -> int:
        from builder import sandbox

        with self._netns("none") as netns:
            if self._spare is not None:  # (no `started` here: the next one is begun now)
                self._spare.begin()
            spec = sandbox.SandboxSpec(
                root=made,
                argv=(label,),
                cwd="/",
                network="none",
                netns=netns,
                stdin=sandbox.DEVNULL,
                stdout=output,
                stderr=output,
                state_dir=state,
            )
            return sandbox.call(spec, lambda: fn("/"), keep_fds=keep_fds)
