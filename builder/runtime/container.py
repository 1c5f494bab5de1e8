"""Assemble a container from an image (overlay of its unpacked layers) and run it.

`prepare` does what can fail before anything runs (the image, the container's record)
and `execute` runs it, attached here or in the detached supervisor (detached.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from builder.errors import RunFailed, UsageError
from builder.image.config import DEFAULT_PATH, ImageConfig
from builder.layer.tree import remove_tree
from builder.record import dataclass, replace
from builder.sandbox import DEVNULL, DirRoot, Mount, OverlayRoot, SandboxSpec, run
from builder.sandbox.handoff import Handoff
from builder.sandbox.limits import Limits, OutOfMemory
from builder.sandbox.security import DOCKER_DEFAULT, Security
from builder.sandbox.sigproxy import proxied
from builder.sandbox.spec import ExecFailed, NetworkMode, UsernsMode
from builder.store import Store
from builder.store.container_record import ContainerConfig, ContainerState
from builder.store.containers import Container
from builder.store.scratch import process_start

DEFAULT_STOP_TIMEOUT = 10.0  # docker's

if TYPE_CHECKING:
    from pathlib import Path

    from builder.sandbox.hosts import HostEntry
    from builder.sandbox.publish import PortMapping
    from builder.sandbox.snapshotter import Snapshotter

# docker run's --network names as the sandbox calls them ("default" is docker's alias).
NETWORKS: Final[dict[str, NetworkMode]] = {
    "bridge": "private",
    "default": "private",
    "none": "none",
    "host": "host",
}


@dataclass(frozen=True)
class RunOptions:
    image: str
    args: tuple[str, ...] = ()  # replaces the image's CMD when given
    entrypoint: str | None = None  # replaces the image's ENTRYPOINT ("" clears it)
    env: tuple[str, ...] = ()  # "K=V" added to (or replacing in) the image's env
    workdir: str | None = None
    user: str | None = None
    network: str = "bridge"  # a NETWORKS name
    add_hosts: tuple[HostEntry, ...] = ()  # --add-host
    ports: tuple[PortMapping, ...] = ()  # -p, on the bridge (private) network only
    hostname: str | None = None
    remove: bool = False  # --rm: drop the container's writable layer when it exits
    limits: Limits | None = None  # --memory, --cpus, --pids-limit... (cgroups)
    # --cap-add, --cap-drop, --security-opt (sandbox/security.from_flags): Docker's defaults
    security: Security = DOCKER_DEFAULT
    mounts: tuple[Mount, ...] = ()  # -v, --mount, --tmpfs
    readonly: bool = False  # --read-only
    interactive: bool = False  # -i: keep stdin open (else /dev/null)
    tty: bool = False  # -t
    name: str | None = None
    init: bool = False
    stop_signal: str | None = None  # else the image's StopSignal, else SIGTERM
    stop_timeout: float | None = None  # else 10 s
    detach: bool = False
    userns: UsernsMode = "host"  # --userns (auto: -v binds show host ids, as podman's)
    snapshotter: Snapshotter | None = None  # forced (sandbox/snapshotter.py); None: probe


def argv_for(config: ImageConfig, options: RunOptions) -> tuple[str, ...]:
    """docker's rule: ENTRYPOINT + (args or CMD); --entrypoint drops the image's CMD."""
    cc = config.config
    if options.entrypoint is not None:
        entry: tuple[str, ...] = (options.entrypoint,) if options.entrypoint else ()
        cmd = options.args
    else:
        entry = tuple(cc.entrypoint or ())
        cmd = options.args or tuple(cc.cmd or ())
    argv = entry + cmd
    if not argv:
        raise UsageError(f"{options.image}: the image has no ENTRYPOINT or CMD; give a command")
    return argv


def env_for(config: ImageConfig, extra: Sequence[str]) -> tuple[str, ...]:
    env: dict[str, str] = {}
    for item in (*config.config.env, *extra):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"-e {item}: expected KEY=VALUE")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    return tuple(f"{k}={v}" for k, v in env.items())


def signal_number(name: str) -> int:
    """docker's --stop-signal / StopSignal: SIGTERM, TERM or 15."""
    text = name.strip().upper()
    if text.isdigit() and 0 < int(text) < signal.NSIG:
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise RunFailed(f"invalid signal: {name}") from None


@dataclass(frozen=True)
class Prepared:
    """A container made and its sandbox described: what `execute` runs."""

    container: Container
    spec: SandboxSpec
    options: RunOptions


def network_of(options: RunOptions) -> NetworkMode:
    mode = NETWORKS.get(options.network)
    if mode is None:
        raise UsageError(f"--network {options.network}: unknown (one of: {', '.join(NETWORKS)})")
    if options.ports and mode != "private":
        # docker drops them with a warning; a flag we cannot honour is an error here.
        raise UsageError(f"-p: ports are published on the bridge network, not {options.network}")
    return mode


def run_image(store: Store, options: RunOptions) -> int:
    """Run the image's process attached; its exit status (128+N when killed by signal N)."""
    with store.lease():  # gc must not take the layers from under a running container
        return execute(store, prepare(store, options))


def prepare(store: Store, options: RunOptions) -> Prepared:
    network = network_of(options)  # before anything is made
    image = store.image(options.image)
    config = image.config
    argv = argv_for(config, options)
    stop = options.stop_signal or config.config.stop_signal or "SIGTERM"
    signal_number(stop)  # refuse a bad one now, not at `builder stop`
    lowers = store.unpacked(image)
    record = ContainerConfig(
        name=options.name or "",
        image=options.image,
        command=argv,
        created=time.time(),
        stop_signal=stop,
        stop_timeout=DEFAULT_STOP_TIMEOUT if options.stop_timeout is None else options.stop_timeout,
        auto_remove=options.remove,
        detached=options.detach,
    )
    container = store.containers.create(record, staging=store.tmp_dir("container"))
    spec = SandboxSpec(
        root=OverlayRoot(
            lowers=lowers,
            upper=container.upper,
            work=container.work,
            volatile=options.remove,
            discarded=options.remove,
            skeleton=store.paths.skeleton,
        ),
        argv=argv,
        env=env_for(config, options.env),
        cwd=options.workdir or config.config.working_dir or "/",
        user=options.user if options.user is not None else (config.config.user or ""),
        hostname=options.hostname or container.id[:12],
        network=network,
        extra_hosts=options.add_hosts,
        ports=options.ports,
        limits=options.limits,
        security=options.security,
        seccomp_cache=store.paths.seccomp,
        mounts=options.mounts,
        stdin=None if options.interactive else DEVNULL,
        readonly_root=options.readonly,
        init=options.init,
        stop_timeout=record.stop_timeout,
        exec_errors="docker",
        userns=options.userns,
        idmap_binds=False,
    )
    return Prepared(container, spec, options)


def execute(store: Store, prepared: Prepared, started: Callable[[], None] | None = None) -> int:
    """Run a prepared container to its end, keeping its state file; `started` is called
    once its pid 1 exists. The owner lock is released, and with --rm the container
    removed, whatever happens."""
    container, spec, options = prepared.container, prepared.spec, prepared.options
    state = store.tmp_dir("sandbox")  # under the store: swept there if we are killed
    terminal = None
    if options.tty:
        from builder.runtime.terminal import Terminal  # only -t pays for the import

        out = sys.stdout.fileno()
        terminal = Terminal(out, sys.stdin.fileno() if options.interactive else None)
        spec = _on_pty(spec, terminal.slave)

    def on_start(pid: int) -> None:
        container.set_state(ContainerState("running", pid=pid, started=time.time()))
        if terminal is not None:
            terminal.start()
        if started is not None:
            started()

    code: int | None = None
    discard: _Discard | None = None
    try:
        with terminal or contextlib.nullcontext():
            try:
                forward = proxied(tty=options.tty)  # docker's sig-proxy
                with _root(store, spec, options) as root:
                    if options.remove and isinstance(root, OverlayRoot) and not root.fuse:
                        # (A copy's or fuse's root is still in use when run returns.)
                        discard = _Discard(store.paths.tmp, container, state)
                    code = run(
                        replace(spec, state_dir=state, root=root),
                        started=on_start,
                        forward=forward,
                        handoff=discard.handoff() if discard is not None else None,
                    )
            except OutOfMemory as oom:  # docker run: the status (137), and OOMKilled
                print(f"builder: the container was {oom}", file=sys.stderr, flush=True)
                code = oom.status
            except ExecFailed as err:  # kept with its code (docker's `wait` says 127 too)
                code = err.exit_code
                raise
        return code
    finally:
        if discard is None or not discard.moved:
            _remove_state(state)
            _finish(store, container, options.remove, code)
        elif container.owner_fd >= 0:
            os.close(container.owner_fd)


class _Discard:
    """--rm's removal left to the sandbox's supervisor (sandbox/handoff.py): the
    container's home renamed into the store's scratch dir under a name the supervisor
    owns (a sweep leaves it while the supervisor lives, and takes it if it was killed),
    which with the state dir it then removes while we exit."""

    def __init__(self, tmp: Path, container: Container, state: Path) -> None:
        self.tmp = tmp
        self.container = container
        self.state = state
        self.moved = False

    def handoff(self) -> Handoff:
        return Handoff(self._move, self._remove)

    def _trash(self, pid: int) -> Path:
        return self.tmp / f"removed-{pid}-{process_start(pid) or 0}-{self.container.id[:12]}"

    def _move(self, supervisor: int) -> bool:  # in the caller: `ps -a` no longer lists it
        try:
            os.rename(self.container.home, self._trash(supervisor))
        except OSError:  # then we remove it ourselves, the long way
            return False
        self.moved = True
        return True

    def _remove(self) -> None:  # in the supervisor
        with contextlib.suppress(OSError):
            os.rmdir(self.state)
        remove_tree(self._trash(os.getpid()), ignore_errors=True)


def _remove_state(state: Path) -> None:
    """The sandbox's state dir: empty (its files were on the supervisor's private tmpfs),
    so one rmdir, not a walk; whatever it may hold otherwise goes the long way."""
    try:
        os.rmdir(state)
    except FileNotFoundError:
        pass
    except OSError:
        remove_tree(state, ignore_errors=True)


def _finish(store: Store, container: Container, remove: bool, code: int | None) -> None:
    with contextlib.suppress(OSError):
        # One that never started goes too (docker keeps it as "created"): a bad flag
        # leaves nothing behind.
        if remove or code is None:
            store.containers.remove(container)
        else:
            final = container.state()
            container.set_state(
                ContainerState(
                    "exited",
                    pid=0,
                    exit_code=code,
                    started=final.started,
                    finished=time.time(),
                )
            )
            remove_tree(container.work, ignore_errors=True)
    if container.owner_fd >= 0:
        os.close(container.owner_fd)  # last: a reader sees the final state once it is free


@contextlib.contextmanager
def _root(store: Store, spec: SandboxSpec, options: RunOptions) -> Iterator[OverlayRoot | DirRoot]:
    """The container's overlay; served by fuse-overlayfs, its upper dir in overlayfs's form
    when it ends; or (the "native" snapshotter) a copy of its image's layers whose changes
    land in its upper dir when it ends."""
    from builder.sandbox.snapshotter import choose

    root = spec.root
    if not isinstance(root, OverlayRoot):
        yield root
        return
    snapshotter = choose(options.snapshotter, store.tmp_dir, store.paths.snapshotter)
    if snapshotter == "overlayfs":
        yield root
        return
    from builder.layer.snapshot import snapshotted

    with snapshotted(snapshotter, root.lowers, root.upper, root.work) as copy:
        yield DirRoot(copy) if copy is not None else replace(root, fuse=True)


def _on_pty(spec: SandboxSpec, slave: int) -> SandboxSpec:
    return replace(spec, stdin=slave, stdout=slave, stderr=slave, tty=True)
