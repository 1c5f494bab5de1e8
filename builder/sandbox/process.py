"""Three processes run one sandbox, each with one job:

  caller (us)   forwards signals (SIGINT/SIGTERM/SIGHUP; for `builder run` every one
                docker's sig-proxy forwards), reads the report pipe, returns the exit
                status or raises SandboxError;
  supervisor    new mount/pid/uts/ipc/net/cgroup namespaces; a tmpfs on the state dir
                for the per-run files; mounts the root and makes the stubs; forks pid 1,
                writes its id maps, waits, removes the stubs;
  pid 1         its own copy of the mount namespace: /proc, /dev, /sys, /etc files, binds;
                pivot_root; a new user namespace; user, cwd, stdio; exec (or `fn`).

As host root, every mount happens BEFORE the user namespace (the kernel then writes trusted
overlay xattrs and 0/0 whiteouts, and no mount is "locked"); the process still ends with no
capability in the host's user namespace, except with the host's network, where it keeps
Docker's default set there, as Docker does (to bind ports below 1024). When not root, the
supervisor enters a user namespace first (uid 0 -> us) and mounts from inside it.

The report pipe carries lines: `P<pid>` (pid 1's host pid, to forward signals to),
`X` (set up, about to exec), `N` (the private network namespace exists: the caller starts
its helper, see network.py) and `E<message>` (a setup step failed). EOF means every
sandbox process has gone.

A second, close-on-exec pipe (the exec pipe) is held only by pid 1 (or `--init`'s
command): EOF with nothing on it after `X` means the exec succeeded (then `started` is
called), "CODE MESSAGE" that it failed (docker's codes: ExecFailed for `run`).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: no enum per call
import contextlib
import functools
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from builder import record
from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox import confine, container, hosts, inroot, mounts, reaper, users
from builder.sandbox.cgroups import Cgroup, made_for
from builder.sandbox.handoff import Handoff, hand_over, take_over
from builder.sandbox.idmap import Handshake, in_initial_user_namespace
from builder.sandbox.limits import OutOfMemory
from builder.sandbox.netns import open_low_ports
from builder.sandbox.network import Network, wait_gate
from builder.sandbox.spec import (
    DirRoot,
    ExecFailed,
    OverlayRoot,
    ProcessStartError,
    SandboxSpec,
)
from builder.sandbox.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MNT_DETACH,
    loopback_up,
    resolve_ahead,
    set_pdeathsig,
    sethostname,
    setns,
    umount2,
    unshare,
)

if TYPE_CHECKING:  # --userns=auto only; a launcher's
    import socket

    from builder.sandbox.idmapped import Idmapping
    from builder.sandbox.launcher import Launched
    from builder.sandbox.subids import IdRange

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Held from making the report pipe to closing the parent's copy of its write end: the EOF
# the caller waits for must not hang on a copy that another thread's fork (sandboxes run at
# once by a build's stages) took in between.
_FORKING = threading.Lock()
# pid 1 ignores signals it has no handler for; this long after forwarding one, SIGKILL.
KILL_GRACE_SECONDS = 3.0
# The record classes that only the supervisor and pid 1 make. record.py compiles a class's
# __init__ on its first use: in each fork of ours that was 6 compiles, ~2.5 ms of every
# sandbox (each RUN step of a one-shot build). We compile them before we fork, once; the
# launcher compiles its own (launcher.serve).
_MADE_BY_FORKS = (
    inroot.Stubs,
    Handshake,
    mounts.EtcFiles,
    users.PasswdEntry,
    users.GroupEntry,
    users.Credentials,
)


@functools.cache
def _ready_to_fork() -> None:
    """What our forks would each do again, done once here (see _MADE_BY_FORKS)."""
    for cls in _MADE_BY_FORKS:
        record.compile_now(cls)
    resolve_ahead()


@dataclass(frozen=True)
class _Run:
    """Everything the forked processes need, fixed before the first fork."""

    spec: SandboxSpec
    state: str
    rootful: bool
    fn: Callable[[], int] | None
    keep_fds: tuple[int, ...]
    # The caller's network namespace (dev, inode): pid 1 changes a sysctl only in another.
    caller_netns: tuple[int, int]
    # The container's cgroup (resource limits), which the supervisor joins; None: no limits.
    cgroup: Cgroup | None = None
    # Capabilities, seccomp, no_new_privs for an exec (see confine.py); None for `call`.
    confinement: confine.Confinement | None = None
    net: Network | None = None  # the private network's gate and helper
    ids: IdRange | None = None  # --userns=auto: container root's host range (leased)
    # The per-run files (name, text), made by the caller: /etc/hosts' host-gateway is an
    # address of the host's network namespace. The supervisor writes them (_write_state).
    files_text: tuple[tuple[str, str], ...] = ()
    exec_w: int = -1  # the exec pipe's write end (an exec, not `call`)
    # The signals the caller forwards to pid 1, which the supervisor ignores and pid 1
    # restores to their defaults (`builder run`: sigproxy.proxied, all docker forwards).
    forward: tuple[int, ...] = FORWARDED_SIGNALS
    # `run`'s cleanup left to the supervisor (handoff.py) and the read end of its pipe.
    handoff: Handoff | None = None
    handoff_r: int = -1
    # Forked by the launcher (launcher.py): our end of the caller's socket, whose hang-up
    # is the caller's death (a fork of the caller dies with it by PR_SET_PDEATHSIG).
    life: int = -1

    @property
    def rootdir(self) -> str:
        return f"{self.state}/root"

    @property
    def scratch(self) -> str:
        return f"{self.state}/scratch"

    @property
    def files(self) -> str:  # a tmpfs in the sandbox's namespaces only (mounts.place_files)
        return f"{self.state}/files"

    @property
    def etc(self) -> mounts.EtcFiles:
        host = os.path.exists("/etc/resolv.conf") and self.spec.network != "private"
        resolv = "/etc/resolv.conf" if host else ""
        return mounts.EtcFiles(
            f"{self.state}/hosts", f"{self.state}/hostname", resolv or f"{self.state}/resolv.conf"
        )


def run(
    spec: SandboxSpec,
    *,
    started: Callable[[int], None] | None = None,
    forward: Sequence[int] = FORWARDED_SIGNALS,
    handoff: Handoff | None = None,
    ahead: bool = False,
) -> int:
    """Run spec.argv in the sandbox; its exit status, 128+N when killed by signal N.
    `started` is called with pid 1's host pid (what `builder stop` signals) once the
    command was executed; the signals in `forward` that we get are passed on to it.
    `handoff`: cleanup the supervisor does once the status is known (handoff.py).
    `ahead`: another sandbox follows soon (a build's next RUN step): as this one ends,
    the launcher forks a supervisor for it (launcher.py)."""
    spec.validate()
    try:
        return _execute(spec, None, (), started, tuple(forward), handoff)
    finally:
        if ahead:
            _ask_ahead(shape(spec))


def _ask_ahead(like: int) -> None:
    if "builder.sandbox.launcher" in sys.modules:  # (none begun: nothing to ask)
        from builder.sandbox import launcher

        found = launcher.current()
        if found is not None:
            found.ahead(like)


def call(spec: SandboxSpec, fn: Callable[[], int], keep_fds: Sequence[int] = ()) -> int:
    """Run `fn` in a forked child inside the sandbox (after pivot_root, in spec.cwd); its
    return value is the status. fds in `keep_fds` stay open for `fn`."""
    spec.validate(need_argv=False)
    return _execute(spec, fn, tuple(keep_fds))


def _execute(
    spec: SandboxSpec,
    fn: Callable[[], int] | None,
    keep: tuple[int, ...],
    started: Callable[[int], None] | None = None,
    forward: tuple[int, ...] = FORWARDED_SIGNALS,
    handoff: Handoff | None = None,
) -> int:
    cgroup = _cgroup(spec)
    try:
        with _leased(spec) as ids:  # early: a missing or used-up range fails before anything
            code = _execute_in(spec, fn, keep, cgroup, started, forward, ids, handoff)
        if code != 0 and cgroup is not None and cgroup.oom_kills():
            raise OutOfMemory(code, cgroup.limits.memory)
        return code
    finally:
        if cgroup is not None:
            cgroup.remove()


@contextlib.contextmanager
def _leased(spec: SandboxSpec) -> Iterator[IdRange | None]:
    """--userns=auto: container root's host range, held while the sandbox runs."""
    if spec.userns != "auto":
        yield None
        return
    if os.geteuid() != 0 or not in_initial_user_namespace():
        raise SandboxError(
            "--userns=auto needs root: rootless, container root is your own id already"
        )
    from builder.sandbox.subids import lease

    held = lease()
    try:
        yield held.ids
    finally:
        held.release()


def _execute_in(
    spec: SandboxSpec,
    fn: Callable[[], int] | None,
    keep: tuple[int, ...],
    cgroup: Cgroup | None,
    started: Callable[[int], None] | None,
    forward: tuple[int, ...],
    ids: IdRange | None,
    handoff: Handoff | None = None,
) -> int:
    net = Network.prepare(spec)  # before anything is made: a missing helper fails here
    given = spec.state_dir is not None
    if given:
        state = str(spec.state_dir)
    else:  # `run` gives one: its start-up does not import tempfile (nor shutil, bz2, lzma)
        import tempfile

        state = tempfile.mkdtemp(prefix="builder-sandbox-")
    # Before any file is made: a bad profile fails here.
    confinement = confine.prepare(spec.security, spec.seccomp_cache) if fn is None else None
    plan = _Run(
        spec,
        state,
        os.geteuid() == 0,
        fn,
        keep,
        _netns(),
        cgroup,
        confinement,
        net,
        ids,
        _texts(spec),
    )
    try:
        for stream in (sys.stdout, sys.stderr):  # or the children would repeat buffered text
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        # A fork on another thread meanwhile would hold report_w (or exec_w) open.
        with _FORKING:
            report_r, report_w = os.pipe2(os.O_CLOEXEC)
            exec_r, exec_w = os.pipe2(os.O_CLOEXEC) if fn is None else (-1, -1)
            handoff_r, handoff_w = os.pipe2(os.O_CLOEXEC) if handoff is not None else (-1, -1)
            plan = record.replace(
                plan, exec_w=exec_w, forward=forward, handoff=handoff, handoff_r=handoff_r
            )
            host_maps = None if plan.rootful else Handshake.new()
            parent = os.getpid()
            launched = _launch(plan, report_w) if host_maps is None else None
            if launched is not None:
                pid = launched.pid
            else:
                _ready_to_fork()
                pid = os.fork()
                if pid == 0:
                    _close(exec_r)
                    _close(handoff_w)
                    _child(report_w, lambda: _supervise(plan, report_w, parent, host_maps))
            os.close(report_w)
            _close(exec_w)
            _close(handoff_r)
        try:
            if net is not None:
                net.parent_side()
            if host_maps is not None:
                host_maps.parent_side()
                host_maps.serve(pid)
            on_netns = (lambda: net.up(pid, state)) if net is not None else None
            code = _wait(pid, report_r, exec_r, plan, started, on_netns, launched)
            # Said its status and has not exited: it waits for our word (take_over).
            said = pid in _EXITING if launched is None else launched.said
            if handoff is not None and said:
                fd, handoff_w = handoff_w, -1  # hand_over closes it, whatever happens
                hand_over(handoff, fd, pid)
            return code
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if launched is not None:
                launched.status()
            else:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            raise
        finally:
            os.close(report_r)
            _close(exec_r)
            _close(handoff_w)  # unused: EOF tells the supervisor there is nothing to do
    finally:
        if net is not None:
            net.close()
        _remove_state(plan)


def _launch(plan: _Run, report_w: int) -> Launched | None:
    """The supervisor forked by this process's launcher (launcher.py), which is not a copy
    of our memory; None where it cannot be (then we fork it, as before): a `call`'s
    function, a handoff whose removal cannot be pickled, no launcher ready."""
    if plan.fn is not None or "builder.sandbox.launcher" not in sys.modules:
        return None  # (not imported: none was begun, and `run` imports no socket for it)
    from builder.sandbox import launcher

    spare = launcher.current()
    if spare is None:
        return None
    spec = plan.spec
    wanted = {0, 1, 2, report_w, plan.exec_w, plan.handoff_r}
    wanted.update(fd for fd in (spec.stdin, spec.stdout, spec.stderr, spec.netns) if fd)
    if plan.net is not None:
        wanted.add(plan.net.gate_r)
    if plan.handoff is not None:
        removal = launcher.deferred(plan.handoff)
        if removal is None:
            return None
        plan = record.replace(plan, handoff=removal)
    return spare.launch(
        (plan, report_w), launcher.fd_flags(wanted), launcher.Context(), shape(spec)
    )


# A shape's bit for a pid 1 that nests a user namespace (its id-map handshake made ahead);
# the others are the CLONE_NEW* flags a spare unshares before its request.
_NESTED = 1


def shape(spec: SandboxSpec) -> int:
    """What a launcher's spare may make for this sandbox before its request comes
    (Pid1Ahead): the namespaces that need no plan, and the pid 1 forked into them; -1
    (launcher.NO_SHAPE) where it must wait for the plan: --userns=auto (its idmapping
    helper precedes the pid namespace), secrets (written into the shared mount
    namespace), a fuse root. (The private network's helper joins the supervisor's
    namespace, which pid 1 forked ahead shares, as `none`'s.)"""
    if (
        spec.userns == "auto"
        or any(m.kind == "file" for m in spec.mounts)
        or (isinstance(spec.root, OverlayRoot) and spec.root.fuse)
    ):
        return -1
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC
    if spec.network != "host":
        flags |= _NESTED if spec.netns is not None else _NESTED | CLONE_NEWNET
    return flags


class Pid1Ahead:
    """In a launcher's spare, before its request: our namespaces (those of `shape`) and
    pid 1 forked into a new pid namespace, waiting (its pages copied, in an idle spare).
    A request then costs neither the unshare nor the fork (~1.3 ms), nor (idle) pid 1's
    first copy-on-write faults (~3.4 ms), and pid 1 takes the caller's fds and state
    while the supervisor mounts the root.
    What needs the plan, pid 1 does once told to go (_init: the net namespace made
    ahead, the cgroup namespace, after it joined the caller's cgroups). It dies with us
    (PR_SET_PDEATHSIG, or its socket's EOF)."""

    def __init__(self, like: int, spares: int, copy: bool) -> None:
        """`spares`: the spare's socket to the launcher, which pid 1 must not hold;
        `copy`: pid 1 copies its pages ahead (launcher.copy_pages)."""
        import socket

        unshare(like & ~_NESTED)
        mounts.make_private()
        self.maps = Handshake.new() if like & _NESTED else None
        unshare(CLONE_NEWPID)
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            os.close(spares)
            _wait_as_pid1(theirs, self.maps, copy)
        theirs.close()

    def hand(self, data: bytes, fds: list[int], wanted: set[int]) -> None:
        """The request, as the launcher sent it (the supervisor places its own copies);
        our fds move off the numbers in `wanted`, where the caller's go."""
        import socket

        self.sock, self.maps = _moved_off(wanted, [*fds, *wanted], self.sock, self.maps)
        socket.send_fds(self.sock, [data], fds)

    def go(self) -> int:
        """The root is ready: pid 1 sets itself up. Its host pid."""
        with contextlib.suppress(OSError):  # (gone: the supervisor reaps its status)
            self.sock.send(b"g")
        self.sock.close()
        return self.pid


def _moved_off(
    taken: set[int], above: list[int], sock: socket.socket, maps: Handshake | None
) -> tuple[socket.socket, Handshake | None]:
    """Our socket and handshake with none of their fds at a number in `taken`, where
    the request's fds are about to be put (dup2 would close ours)."""
    import fcntl
    import socket

    low = max(above, default=0) + 1

    def off(fd: int) -> int:
        if fd not in taken:
            return fd
        new: int = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
        os.close(fd)
        return new

    if sock.fileno() in taken:
        sock = socket.socket(fileno=off(sock.detach()))
    if maps is not None:
        maps = Handshake(off(maps.ask_r), off(maps.ask_w), off(maps.done_r), off(maps.done_w))
    return sock, maps


def _wait_as_pid1(sock: socket.socket, maps: Handshake | None, copy: bool) -> None:
    """Pid 1 forked ahead: copy our pages (`copy`), take the request's fds and the
    caller's state, then wait for the supervisor's word; never returns."""
    import pickle

    from builder.sandbox import launcher

    try:
        set_pdeathsig(signal.SIGKILL)
        if copy:
            launcher.copy_pages()
        data, fds = launcher.take_request(sock)
        if not fds:  # the spare ended unused
            os._exit(0)
        (plan, report_w), wanted, context = pickle.loads(data)
        numbers = {n for n, _ in wanted}
        sock, maps = _moved_off(numbers, [*fds, *numbers], sock, maps)
        os.close(launcher.place(fds, wanted))  # (the request's socket: the supervisor's)
    except BaseException:  # nowhere to report yet: the supervisor sees our status
        os._exit(255)

    def body() -> int:
        context.adopt()  # (its cgroups: before ours, in _init)
        _signal.pthread_sigmask(_signal.SIG_BLOCK, plan.forward)  # as the supervisor's
        if sock.recv(1) != b"g":
            return 255  # the supervisor failed (and reported why)
        sock.close()
        return _init(plan, report_w, maps, None, ahead=True)

    _child(report_w, body)


def supervise_launched(sent: tuple[_Run, int], life: int, ahead: Pid1Ahead | None) -> int:
    """The supervisor, forked by the launcher with the caller's fds in place: as `_child`
    of `_supervise`, until the caller closes its end of `life` (it died). `ahead`: its
    pid 1, forked before the request."""
    plan, report_w = sent
    plan = record.replace(plan, life=life)
    _child(report_w, lambda: _supervise(plan, report_w, os.getppid(), None, ahead))
    return 255  # (_child never returns)


def _close(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def _cgroup(spec: SandboxSpec) -> Cgroup | None:
    """The container's cgroup with its limits written, or None when it has no limits (or
    only best-effort ones that this machine or user cannot apply)."""
    if spec.cgroup is not None:
        return spec.cgroup  # made ahead (cgroups.Spare)
    limits = spec.limits
    if limits is None or not limits.any():
        return None
    return made_for(limits)


def _texts(spec: SandboxSpec) -> tuple[tuple[str, str], ...]:
    return (
        ("hosts", hosts.hosts_file(spec.hostname, spec.extra_hosts)),
        ("hostname", f"{spec.hostname}\n"),
        ("resolv.conf", _resolv_conf(spec)),
    )


def _write_state(plan: _Run) -> None:
    """The per-run files and mount points, on the state dir's tmpfs (in the supervisor)."""
    os.mkdir(plan.rootdir, 0o755)
    os.mkdir(plan.scratch, 0o755)
    for fname, text in plan.files_text:
        with open(f"{plan.state}/{fname}", "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(text)


def _resolv_conf(spec: SandboxSpec) -> str:
    """The private network's: the host's, its loopback resolvers made the helper's."""
    if spec.network != "private":
        return ""
    from builder.sandbox.slirp import DNS_FORWARDER

    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    return hosts.resolv_conf(text, DNS_FORWARDER)


def _remove_state(plan: _Run) -> None:
    # What the sandbox made in its state dir was on its private tmpfs, gone with its mount
    # namespace. A given state dir is the caller's to remove. Never a recursive delete:
    # should a mount ever leak here, we must not walk into it.
    if plan.spec.state_dir is None:
        with contextlib.suppress(OSError):
            os.rmdir(plan.state)


def _child(report_w: int, body: Callable[[], int]) -> None:
    """Run `body` in a forked child and _exit with its status: never return to the caller."""
    code = 255
    try:
        code = body()
    except ProcessStartError as err:
        _report(report_w, "S" + str(err))
    except BaseException as err:
        _report(report_w, "E" + _message(err))
    finally:
        os._exit(code)


def _message(err: BaseException) -> str:
    if isinstance(err, SandboxError):
        return str(err)
    if isinstance(err, OSError):
        return f"sandbox setup: {err.strerror or err}" + (
            f": {err.filename}" if err.filename else ""
        )
    return f"sandbox setup: {type(err).__name__}: {err}"


def _report(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (line.replace("\n", " ") + "\n").encode(errors="replace"))


# ---- the supervisor -------------------------------------------------------------------


def _supervise(
    plan: _Run,
    report_w: int,
    parent: int,
    host_maps: Handshake | None,
    ahead: Pid1Ahead | None = None,
) -> int:
    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the caller died before prctl took effect
        return 255
    if plan.net is not None and plan.life < 0:  # (the launcher was sent the read end only)
        plan.net.child_side()
    # A terminal's ^C reaches the whole process group: the caller forwards it to pid 1;
    # we must outlive pid 1 to report its status and remove the stubs. Blocked in one
    # syscall (they were ignored in one each); pid 1 starts with an empty mask.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, plan.forward)  # (no enum of the old mask)
    if host_maps is not None:
        host_maps.child_side()
        unshare(CLONE_NEWUSER)
        host_maps.ask()
    # Before the pid namespace: making it forks a helper, which must not become its init.
    idmap = _idmapping(plan.ids) if plan.ids is not None else None
    spec = plan.spec
    # The pid namespace comes last, just before pid 1's fork: a fuse-overlayfs root's
    # daemon, forked in between, must not become its init.
    if ahead is None:  # (else made before the request, and pid 1 takes the rest)
        flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
        if spec.network != "host" and spec.netns is None:
            flags |= CLONE_NEWNET
        unshare(flags)
        if spec.netns is not None:  # made ahead (netns.py), set up already
            setns(spec.netns, CLONE_NEWNET)
        if spec.network == "private":
            _report(report_w, "N")  # the caller gives the namespace its network meanwhile
        mounts.make_private()
    elif spec.network == "private":
        _report(report_w, "N")  # (ours is pid 1's: it was forked into it)
    mounts.private_tmpfs(plan.state)
    _write_state(plan)
    plan = record.replace(plan, spec=mounts.place_files(plan.spec, plan.files))
    spec = plan.spec
    # In a user namespace (ours as a user, or a rootless builder's) overlay needs userxattr.
    userxattr = not plan.rootful or not in_initial_user_namespace()
    daemon = mounts.mount_root(spec.root, plan.rootdir, plan.scratch, userns=userxattr, idmap=idmap)
    try:
        code = _supervise_root(plan, report_w, idmap, ahead)
    finally:
        if daemon is not None:
            from builder.sandbox import fuse

            fuse.stop(daemon, plan.rootdir)
    # All is cleaned up: the caller goes on now, not after our exit, which unmaps our copy
    # of its (big) memory first (~2 ms here) and only then closes the pipe. Our copies of
    # its fds go first, stdio included: the locks on them (a container's owner lock) must
    # be free, and a reader of its output see EOF, once it has closed its own.
    container.close_fds([report_w, plan.handoff_r], first=0)
    _report(report_w, f"C{code}")
    if plan.handoff is not None:
        os.close(report_w)  # the caller's EOF does not wait for the removal
        take_over(plan.handoff, plan.handoff_r, plan.state)
    return code


def _supervise_root(
    plan: _Run, report_w: int, idmap: Idmapping | None, ahead: Pid1Ahead | None
) -> int:
    spec = plan.spec
    # With an idmapped root, what we create in it must be made as container root: host
    # root's id has no name there (EOVERFLOW).
    with _as_container_root(idmap):
        stubs = mounts.make_stubs(plan.rootdir, spec)
    try:
        if isinstance(spec.root, DirRoot) and spec.root.readonly:
            mounts.remount_readonly(plan.rootdir)
        # With the host's network, pid 1 stays in the host's user namespace, as in Docker:
        # the kernel checks the network's own namespace for CAP_NET_BIND_SERVICE, so a
        # nested one would leave root unable to bind a port below 1024 there. It keeps only
        # Docker's capabilities (confine), which is Docker's isolation.
        # With --userns=auto it nests always: container root must not be host root.
        nested = plan.rootful and (spec.network != "host" or plan.ids is not None)
        if ahead is not None:
            maps = ahead.maps
            pid = ahead.go()
        else:
            maps = Handshake.new() if nested else None
            unshare(CLONE_NEWPID)
            pid = os.fork()
            if pid == 0:
                _child(report_w, lambda: _init(plan, report_w, maps, idmap))
        _close(plan.exec_w)  # pid 1 holds the only copy: its exec closes it
        _report(report_w, f"P{pid}")
        if maps is not None:
            maps.parent_side()
            ids = plan.ids
            try:
                maps.serve(pid, None if ids is None else (ids.uid_maps(), ids.gid_maps()))
            except SandboxError as err:
                _report(report_w, "E" + str(err))
        status = _wait_pid1(pid, plan.life)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code
    finally:
        if isinstance(spec.root, DirRoot) and spec.root.readonly:
            mounts.remount_writable(plan.rootdir)  # only our view: the stubs must go
        if not (isinstance(spec.root, OverlayRoot) and spec.root.discarded):
            # (A discarded upper dir is thrown away next, stubs and all: `run --rm`.)
            with _as_container_root(idmap):
                mounts.remove_stubs(plan.rootdir, stubs)
        # Unmount now, not when the namespace dies (that may happen asynchronously, after
        # the caller has started reading the upper dir).
        with contextlib.suppress(SandboxError):
            umount2(plan.rootdir, MNT_DETACH)


def _wait_pid1(pid: int, life: int) -> int:
    """Pid 1's wait status. Forked by the launcher, pid 1 is killed if the caller dies
    meanwhile (`life` hangs up), as a fork of the caller is killed with it."""
    if life >= 0:
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd, life], [], [])
            if pidfd not in ready:
                os.kill(pid, signal.SIGKILL)
        finally:
            os.close(pidfd)
    return os.waitpid(pid, 0)[1]


# ---- pid 1 --------------------------------------------------------------------------------


def _idmapping(ids: IdRange) -> Idmapping:
    from builder.sandbox.idmapped import Idmapping

    return Idmapping.create(ids)


def _as_container_root(idmap: Idmapping | None) -> contextlib.AbstractContextManager[None]:
    return idmap.as_creator() if idmap is not None else contextlib.nullcontext()


def _init(
    plan: _Run,
    report_w: int,
    maps: Handshake | None,
    idmap: Idmapping | None,
    *,
    ahead: bool = False,
) -> int:
    # (No getppid() check: our parent is outside our pid namespace, so it reads 0. If the
    # supervisor dies before this, the id-map handshake fails, or setup finds no caller.)
    set_pdeathsig(signal.SIGKILL)
    spec = plan.spec
    if ahead and spec.netns is not None:  # (forked ahead: the supervisor joined none)
        setns(spec.netns, CLONE_NEWNET)
    if plan.cgroup is not None:
        # pid 1 and all it forks, not the supervisor: a fork of the (big) caller, it would
        # count against the limits and could be the one the OOM killer picks. A cgroup
        # namespace of its own makes the container see its cgroup as "/", as in Docker.
        plan.cgroup.join()
        unshare(CLONE_NEWCGROUP)
    elif ahead:  # the supervisor's is made after our fork: its cgroups are ours now
        unshare(CLONE_NEWCGROUP)
    if maps is not None:
        maps.child_side()
    # A copy of the supervisor's namespace: what we mount now stays out of its view.
    unshare(CLONE_NEWNS)
    mounts.populate(plan.rootdir, spec, plan.etc, idmap)
    if spec.readonly_root:  # in our namespace only: the supervisor still removes the stubs
        mounts.remount_readonly(plan.rootdir)
    sethostname(spec.hostname)
    if spec.network != "host" and spec.netns is None:
        loopback_up()
        _allow_low_ports(plan.caller_netns)
    mounts.pivot(plan.rootdir)
    creds = users.resolve(spec.user)
    with _as_container_root(idmap):
        container.make_cwd(spec.cwd)
    if maps is not None:
        unshare(CLONE_NEWUSER)
        maps.ask()
    if plan.confinement is not None:
        confine.before_user(plan.confinement)
    container.become(creds, spec.cwd)
    # A change of our host uid clears the parent-death signal: as container root under
    # --userns=auto (host uid B) or as a USER, pid 1 must still die with the supervisor.
    set_pdeathsig(signal.SIGKILL)
    if plan.confinement is not None:
        confine.after_user(plan.confinement)
    env = container.environment(spec, creds)
    if plan.net is not None:
        wait_gate(plan.net.gate_r)
    container.stdio(spec)
    if spec.tty:
        container.controlling_tty()
    container.restore_signals(plan.forward)
    if plan.fn is None:
        container.close_fds([report_w, plan.exec_w])  # both are close-on-exec
        _report(report_w, "X")  # set up: the exec pipe then tells how the exec went

        def start() -> int:
            return container.exec_command(spec.argv, env, spec.exec_errors, plan.exec_w)

        return reaper.run(start, plan.exec_w) if spec.init else start()
    container.close_fds(plan.keep_fds)
    os.environ.clear()
    os.environ.update(env)
    return container.run_callable(plan.fn)


def _netns() -> tuple[int, int]:
    st = os.stat("/proc/self/ns/net")
    return st.st_dev, st.st_ino


def _allow_low_ports(caller_netns: tuple[int, int]) -> None:
    """Let the container's root bind ports below 1024 in its own network namespace, as
    Docker does: its capabilities are in its own user namespace, which the kernel's
    port check does not consult. The sysctl is per network namespace; /proc/sys/net
    shows the writer's own. The check is a second lock on a door the caller already
    shut (a namespace of its own is made for every network but "host"): never the host's value."""
    if _netns() == caller_netns:
        raise SandboxError("sandbox: no private network namespace to set up")
    open_low_ports()


# ---- the caller ---------------------------------------------------------------------------


class _Forwarder:
    """Forward the plan's signals to pid 1; SIGKILL it if it outlives the grace after a
    SIGINT, SIGTERM or SIGHUP (docker's CLI has no such timer; the others never start it)."""

    def __init__(self, grace: float | None, signals: tuple[int, ...]) -> None:
        self.signals = signals
        self.grace = KILL_GRACE_SECONDS if grace is None else grace
        self.target: int | None = None
        self.pending: list[int] = []
        self.deadline: float | None = None
        self.saved: dict[int, object] = {}

    def install(self) -> None:
        # signal.signal's wrapper converts each old handler to an enum (an exception for
        # each Python one): ~0.6 ms for `run`'s 49 signals there and back; the C module's
        # takes 0.1.
        try:
            for sig in self.signals:
                self.saved[sig] = _signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals are not ours to take
            self.restore()

    def restore(self) -> None:
        for sig, handler in self.saved.items():
            _signal.signal(sig, handler)
        self.saved.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.deadline is None and signum in FORWARDED_SIGNALS:
            self.deadline = time.monotonic() + self.grace
        if self.target is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def attach(self, pid: int) -> None:
        self.target = pid
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()

    def _send(self, signum: int) -> None:
        if self.target is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.target, signum)

    def timeout(self) -> float:
        # Bounded: select() restarts with its original timeout after our handler ran
        # (PEP 475), so an unbounded wait would never notice a new deadline.
        if self.deadline is None:
            return 0.25
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._send(signal.SIGKILL)
            self.deadline = time.monotonic() + 3600
            return 0.25
        return min(left, 0.25)


# Supervisors that said their status ("C") and were still exiting: reaped by the next
# sandbox's caller in this process, or by init once it ends.
_EXITING: set[int] = set()


def _reap(pid: int, said: int | None) -> int:
    """The supervisor's wait status; one that said its status is not waited for."""
    for old in list(_EXITING):
        try:
            if os.waitpid(old, os.WNOHANG)[0]:
                _EXITING.discard(old)
        except ChildProcessError:  # another thread's call took it
            _EXITING.discard(old)
    if said is None:
        return os.waitpid(pid, 0)[1]
    if os.waitpid(pid, os.WNOHANG)[0] == 0:
        _EXITING.add(pid)
    return said << 8  # the status of an exit with code `said`


def _wait(
    pid: int,
    report_r: int,
    exec_r: int,
    plan: _Run,
    started: Callable[[int], None] | None,
    on_netns: Callable[[], None] | None = None,
    launched: Launched | None = None,
) -> int:
    forwarder = _Forwarder(plan.spec.stop_timeout, plan.forward)
    forwarder.install()
    errors: list[str] = []
    start_error = ""  # "S": the spec's fault (ProcessStartError)
    network: SandboxError | None = None  # pid 1 ends at its gate: report why after EOF
    buf = b""
    set_up = False  # "X": pid 1 is about to exec
    exec_open = exec_r >= 0
    exec_said = b""  # "CODE MESSAGE" when the exec failed
    done: int | None = None  # "C": the supervisor's status, said before it exits
    try:
        while True:
            watched = [report_r, exec_r] if exec_open else [report_r]
            ready, _, _ = select.select(watched, [], [], forwarder.timeout())
            if report_r in ready:  # first: "X" comes before the exec pipe's EOF
                chunk = os.read(report_r, 4096)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    if line.startswith("P") and line[1:].isdigit():
                        forwarder.attach(int(line[1:]))
                    elif line == "X":
                        set_up = True
                    elif line.startswith("C") and line[1:].isdigit():
                        done = int(line[1:])
                    elif line.startswith("E"):
                        errors.append(line[1:])
                    elif line.startswith("S"):
                        start_error = start_error or line[1:]
                    elif line == "N" and on_netns is not None:
                        try:
                            on_netns()
                        except SandboxError as err:
                            network = err
            if exec_open and exec_r in ready:
                more = os.read(exec_r, 4096)
                exec_said += more
                exec_open = bool(more)  # EOF: pid 1 exec'd, or ended
                if not exec_open and set_up and not exec_said and started and forwarder.target:
                    started(forwarder.target)
            if done is not None:  # pid 1 has gone, and every process of its namespace
                break
        while exec_open and (more := os.read(exec_r, 4096)):  # every writer has gone
            exec_said += more
        if launched is None:
            status = _reap(pid, done)
        elif done is None:
            status = launched.status()
        else:  # the launcher reaps it
            launched.close()
            launched.said = True
            status = done << 8
    finally:
        forwarder.restore()
    if errors:  # a setup step's failure is the cause, even of the network's
        raise SandboxError(errors[0])
    if start_error:
        raise ProcessStartError(start_error)
    if network is not None:
        raise network
    if os.WIFSIGNALED(status):
        raise SandboxError(f"sandbox supervisor killed by signal {os.WTERMSIG(status)}")
    code, _, message = exec_said.decode(errors="replace").partition(" ")
    if plan.spec.exec_errors == "docker" and code.isdigit():
        raise ExecFailed(message, int(code))
    return os.waitstatus_to_exitcode(status)
