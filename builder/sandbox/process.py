"""Three processes run one sandbox, each with one job:

  caller (us)   writes the per-run files, forwards SIGINT/SIGTERM/SIGHUP, reads the
                report pipe, returns the exit status or raises SandboxError;
  supervisor    new mount/pid/uts/ipc/net/cgroup namespaces; mounts the root and makes
                the stubs; forks pid 1, writes its id maps, waits, removes the stubs;
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
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from types import FrameType

from builder import record
from builder.errors import SandboxError
from builder.record import dataclass
from builder.sandbox import confine, container, hosts, mounts, reaper, users
from builder.sandbox.cgroups import Cgroup, Unavailable
from builder.sandbox.idmap import Handshake, in_initial_user_namespace
from builder.sandbox.limits import OutOfMemory
from builder.sandbox.network import Network, wait_gate
from builder.sandbox.spec import DirRoot, ProcessStartError, SandboxSpec
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
    set_pdeathsig,
    sethostname,
    umount2,
    unshare,
)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# pid 1 ignores signals it has no handler for; this long after forwarding one, SIGKILL.
KILL_GRACE_SECONDS = 3.0


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


def run(spec: SandboxSpec, *, started: Callable[[int], None] | None = None) -> int:
    """Run spec.argv in the sandbox; its exit status, 128+N when killed by signal N.
    `started` is called with pid 1's host pid (what `builder stop` signals) once the
    sandbox is set up and the command about to be executed."""
    spec.validate()
    return _execute(spec, None, (), started)


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
) -> int:
    cgroup = _cgroup(spec)
    try:
        code = _execute_in(spec, fn, keep, cgroup, started)
        if code != 0 and cgroup is not None and cgroup.oom_kills():
            raise OutOfMemory(code, cgroup.limits.memory)
        return code
    finally:
        if cgroup is not None:
            cgroup.remove()


def _execute_in(
    spec: SandboxSpec,
    fn: Callable[[], int] | None,
    keep: tuple[int, ...],
    cgroup: Cgroup | None,
    started: Callable[[int], None] | None,
) -> int:
    net = Network.prepare(spec)  # before anything is made: a missing helper fails here
    given = spec.state_dir is not None
    state = str(spec.state_dir) if given else tempfile.mkdtemp(prefix="builder-sandbox-")
    confinement = confine.prepare(spec.security) if fn is None else None  # before any file
    plan = _Run(spec, state, os.geteuid() == 0, fn, keep, _netns(), cgroup, confinement, net)
    try:
        _write_state(plan)
        for stream in (sys.stdout, sys.stderr):  # or the children would repeat buffered text
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        host_maps = None if plan.rootful else Handshake.new()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(report_w, lambda: _supervise(plan, report_w, parent, host_maps))
        os.close(report_w)
        try:
            if net is not None:
                net.parent_side()
            if host_maps is not None:
                host_maps.parent_side()
                host_maps.serve(pid)
            on_netns = (lambda: net.up(pid, state)) if net is not None else None
            return _wait(pid, report_r, spec.stop_timeout, started, on_netns)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise
        finally:
            os.close(report_r)
    finally:
        if net is not None:
            net.close()
        _remove_state(plan)


def _cgroup(spec: SandboxSpec) -> Cgroup | None:
    """The container's cgroup with its limits written, or None when it has no limits (or
    only best-effort ones that this machine or user cannot apply)."""
    limits = spec.limits
    if limits is None or not limits.any():
        return None
    try:
        cgroup = Cgroup(limits)
        cgroup.create()
    except Unavailable:
        if limits.best_effort:
            return None
        raise
    return cgroup


def _write_state(plan: _Run) -> None:
    os.mkdir(plan.rootdir, 0o755)
    os.mkdir(plan.scratch, 0o755)
    spec = plan.spec
    files = {
        "hosts": hosts.hosts_file(spec.hostname, spec.extra_hosts),
        "hostname": f"{spec.hostname}\n",
        "resolv.conf": _resolv_conf(spec),
    }
    for fname, text in files.items():
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
    # Never a recursive delete: should a mount ever leak here, we must not walk into it.
    for fname in ("hosts", "hostname", "resolv.conf"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{plan.state}/{fname}")
    owned = plan.spec.state_dir is None  # a given state dir is the caller's to remove
    for dname in (plan.rootdir, plan.scratch, plan.files, *([plan.state] if owned else [])):
        with contextlib.suppress(OSError):
            os.rmdir(dname)


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


def _supervise(plan: _Run, report_w: int, parent: int, host_maps: Handshake | None) -> int:
    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the caller died before prctl took effect
        return 255
    if plan.net is not None:
        plan.net.child_side()
    for sig in FORWARDED_SIGNALS:
        # A terminal's ^C reaches the whole process group: the caller forwards it to pid 1;
        # we must outlive pid 1 to report its status and remove the stubs.
        signal.signal(sig, signal.SIG_IGN)
    if host_maps is not None:
        host_maps.child_side()
        unshare(CLONE_NEWUSER)
        host_maps.ask()
    spec = plan.spec
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
    if spec.network != "host":
        flags |= CLONE_NEWNET
    unshare(flags)
    if spec.network == "private":
        _report(report_w, "N")  # the caller gives the namespace its network meanwhile
    mounts.make_private()
    plan = record.replace(plan, spec=mounts.place_files(plan.spec, plan.files))
    spec = plan.spec
    # In a user namespace (ours as a user, or a rootless builder's) overlay needs userxattr.
    userxattr = not plan.rootful or not in_initial_user_namespace()
    mounts.mount_root(spec.root, plan.rootdir, plan.scratch, userns=userxattr)
    stubs = mounts.make_stubs(plan.rootdir, spec)
    try:
        if isinstance(spec.root, DirRoot) and spec.root.readonly:
            mounts.remount_readonly(plan.rootdir)
        # With the host's network, pid 1 stays in the host's user namespace, as in Docker:
        # the kernel checks the network's own namespace for CAP_NET_BIND_SERVICE, so a
        # nested one would leave root unable to bind a port below 1024 there. It keeps only
        # Docker's capabilities (confine), which is Docker's isolation.
        nested = plan.rootful and spec.network != "host"
        maps = Handshake.new() if nested else None
        pid = os.fork()
        if pid == 0:
            _child(report_w, lambda: _init(plan, report_w, maps))
        _report(report_w, f"P{pid}")
        if maps is not None:
            maps.parent_side()
            try:
                maps.serve(pid)
            except SandboxError as err:
                _report(report_w, "E" + str(err))
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code
    finally:
        if isinstance(spec.root, DirRoot) and spec.root.readonly:
            mounts.remount_writable(plan.rootdir)  # only our view: the stubs must go
        mounts.remove_stubs(plan.rootdir, stubs)
        # Unmount now, not when the namespace dies (that may happen asynchronously, after
        # the caller has started reading the upper dir).
        with contextlib.suppress(SandboxError):
            umount2(plan.rootdir, MNT_DETACH)


# ---- pid 1 --------------------------------------------------------------------------------


def _init(plan: _Run, report_w: int, maps: Handshake | None) -> int:
    # (No getppid() check: our parent is outside our pid namespace, so it reads 0. If the
    # supervisor dies before this, the id-map handshake fails, or setup finds no caller.)
    set_pdeathsig(signal.SIGKILL)
    spec = plan.spec
    if plan.cgroup is not None:
        # pid 1 and all it forks, not the supervisor: a fork of the (big) caller, it would
        # count against the limits and could be the one the OOM killer picks. A cgroup
        # namespace of its own makes the container see its cgroup as "/", as in Docker.
        plan.cgroup.join()
        unshare(CLONE_NEWCGROUP)
    if maps is not None:
        maps.child_side()
    # A copy of the supervisor's namespace: what we mount now stays out of its view.
    unshare(CLONE_NEWNS)
    mounts.populate(plan.rootdir, spec, plan.etc)
    if spec.readonly_root:  # in our namespace only: the supervisor still removes the stubs
        mounts.remount_readonly(plan.rootdir)
    sethostname(spec.hostname)
    if spec.network != "host":
        loopback_up()
        _allow_low_ports(plan.caller_netns)
    mounts.pivot(plan.rootdir)
    creds = users.resolve(spec.user)
    container.make_cwd(spec.cwd)
    if maps is not None:
        unshare(CLONE_NEWUSER)
        maps.ask()
    if plan.confinement is not None:
        confine.before_user(plan.confinement)
    container.become(creds, spec.cwd)
    if plan.confinement is not None:
        confine.after_user(plan.confinement)
    env = container.environment(spec, creds)
    if plan.net is not None:
        wait_gate(plan.net.gate_r)
    container.stdio(spec)
    if spec.tty:
        container.controlling_tty()
    container.restore_signals()
    if plan.fn is None:
        container.close_fds([report_w])  # the report pipe is close-on-exec
        _report(report_w, "X")  # set up: what `started` (`run -d`) waits for

        def start() -> int:
            return container.exec_command(spec.argv, env, spec.exec_errors)

        return reaper.run(start) if spec.init else start()
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
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w", encoding="ascii") as f:
            f.write("0")
    except FileNotFoundError:
        pass  # a kernel before 4.11: no such knob, low ports stay closed


# ---- the caller ---------------------------------------------------------------------------


class _Forwarder:
    """Forward SIGINT/SIGTERM/SIGHUP to pid 1; SIGKILL it if it outlives the grace."""

    def __init__(self, grace: float | None) -> None:
        self.grace = KILL_GRACE_SECONDS if grace is None else grace
        self.target: int | None = None
        self.pending: list[int] = []
        self.deadline: float | None = None
        self.saved: dict[int, object] = {}

    def install(self) -> None:
        try:
            for sig in FORWARDED_SIGNALS:
                self.saved[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals are not ours to take
            self.restore()

    def restore(self) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self.saved.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.deadline is None:
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


def _wait(
    pid: int,
    report_r: int,
    grace: float | None,
    started: Callable[[int], None] | None,
    on_netns: Callable[[], None] | None = None,
) -> int:
    forwarder = _Forwarder(grace)
    forwarder.install()
    errors: list[str] = []
    start_error = ""  # "S": the spec's fault (ProcessStartError)
    network: SandboxError | None = None  # pid 1 ends at its gate: report why after EOF
    buf = b""
    try:
        while True:
            ready, _, _ = select.select([report_r], [], [], forwarder.timeout())
            if not ready:
                continue
            chunk = os.read(report_r, 4096)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith("P") and line[1:].isdigit():
                    forwarder.attach(int(line[1:]))
                elif line == "X" and started is not None and forwarder.target is not None:
                    started(forwarder.target)
                elif line.startswith("E"):
                    errors.append(line[1:])
                elif line.startswith("S"):
                    start_error = start_error or line[1:]
                elif line == "N" and on_netns is not None:
                    try:
                        on_netns()
                    except SandboxError as err:
                        network = err
        _, status = os.waitpid(pid, 0)
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
    return os.waitstatus_to_exitcode(status)
