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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from builder.sandbox.spec import Mount, OverlayRoot

__all__ = ["Executor", "InRoot", "Mount", "OverlayRoot", "Process", "SandboxExecutor"]

# An in-root writer: called with the path at which it reaches the image's root ("/" inside
# the sandbox, where it runs after pivot_root); returns an exit status. Messages go to fd 2.
InRoot = Callable[[str], int]


@dataclass(frozen=True)
class Process:
    """A RUN's process, as the image config and the step's flags define it."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str  # "" for root; "name", "uid", "name:group" as USER wrote it
    network: Literal["none", "host"]
    mounts: tuple[Mount, ...] = ()


class Executor(Protocol):
    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        """Run PROCESS in ROOT with stdin on /dev/null and stdout+stderr on the fd OUTPUT;
        its exit status (128+N when killed by signal N)."""
        ...

    def call(
        self, root: OverlayRoot, label: str, fn: InRoot, output: int, keep_fds: tuple[int, ...] = ()
    ) -> int:
        """Run FN as uid 0 in ROOT (cwd "/", stderr on OUTPUT, the fds KEEP_FDS still open);
        its return value is the status. LABEL names the work (its argv[0] in the sandbox)."""
        ...


class SandboxExecutor:
    """The real executor: Linux namespaces on an overlayfs of the layer dirs."""

    def run(self, root: OverlayRoot, process: Process, output: int) -> int:
        from builder import sandbox

        spec = sandbox.SandboxSpec(
            root=root,
            argv=process.argv,
            env=process.env,
            cwd=process.cwd,
            user=process.user,
            network=process.network,
            stdin=sandbox.DEVNULL,
            stdout=output,
            stderr=output,
            mounts=process.mounts,
        )
        return sandbox.run(spec)

    def call(
        self, root: OverlayRoot, label: str, fn: InRoot, output: int, keep_fds: tuple[int, ...] = ()
    ) -> int:
        from builder import sandbox

        spec = sandbox.SandboxSpec(
            root=root,
            argv=(label,),
            cwd="/",
            stdin=sandbox.DEVNULL,
            stdout=output,
            stderr=output,
        )
        return sandbox.call(spec, lambda: fn("/"), keep_fds=keep_fds)
