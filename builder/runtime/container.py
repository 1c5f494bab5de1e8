"""Assemble a container from an image (overlay of its unpacked layers) and run it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from builder.errors import UsageError
from builder.image.config import DEFAULT_PATH, ImageConfig
from builder.layer.tree import remove_tree
from builder.sandbox import OverlayRoot, SandboxSpec, run
from builder.sandbox.spec import NetworkMode
from builder.store import Store

if TYPE_CHECKING:
    from builder.sandbox.hosts import HostEntry
    from builder.sandbox.publish import PortMapping

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


def network_of(options: RunOptions) -> NetworkMode:
    mode = NETWORKS.get(options.network)
    if mode is None:
        raise UsageError(f"--network {options.network}: unknown (one of: {', '.join(NETWORKS)})")
    if options.ports and mode != "private":
        # docker drops them with a warning; a flag we cannot honour is an error here.
        raise UsageError(f"-p: ports are published on the bridge network, not {options.network}")
    return mode


def run_image(store: Store, options: RunOptions) -> int:
    """Run the image's process; returns its exit status (128+N when killed by signal N)."""
    with store.lease():  # gc must not take the layers from under a running container
        return _run(store, options)


def _run(store: Store, options: RunOptions) -> int:
    network = network_of(options)  # before anything is made
    image = store.image(options.image)
    config = image.config
    lowers = store.unpacked(image)
    container = store.containers.create()
    state = store.tmp_dir("sandbox")  # under the store: swept there if we are killed
    spec = SandboxSpec(
        root=OverlayRoot(lowers=lowers, upper=container.upper, work=container.work),
        argv=argv_for(config, options),
        env=env_for(config, options.env),
        cwd=options.workdir or config.config.working_dir or "/",
        user=options.user if options.user is not None else (config.config.user or ""),
        hostname=options.hostname or container.id,
        network=network,
        state_dir=state,
        extra_hosts=options.add_hosts,
        ports=options.ports,
    )
    try:
        return run(spec)
    finally:
        remove_tree(state, ignore_errors=True)
        if options.remove:
            store.containers.remove(container)
        else:
            remove_tree(container.work, ignore_errors=True)
