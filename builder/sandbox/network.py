"""The private network's plumbing across the sandbox's processes.

The supervisor makes the network namespace and says so on the report pipe (`N`). The caller,
still in the host's network namespace, then starts the helper (slirp4netns) for it,
publishes the ports, and opens the gate: a pipe pid 1 reads before it runs the command, so
that the command never starts without its network. Pid 1 meanwhile mounts its root: the
helper's start costs the step little more than the time the two overlap.

The gate is a pipe made before the first fork: pid 1 inherits its read end, the caller
keeps the write end. A caller that dies closes it, and pid 1 fails instead of waiting.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from builder.record import dataclass, field
from builder.sandbox.spec import SandboxSpec

if TYPE_CHECKING:  # loaded with the private network only: `run --network none`'s
    from builder.sandbox import slirp  # start-up does not import socket, shutil, tempfile

OPEN: bytes = b"1"
GATE_SHUT = 125  # pid 1's status when the network could not be set up
# sun_path holds 108 bytes with its NUL: a deep store's state dir cannot hold the socket.
_SUN_PATH_MAX = 107


@dataclass
class Network:
    spec: SandboxSpec
    executable: str
    gate_r: int
    gate_w: int
    helper: slirp.Slirp | None = None
    api: str | None = None  # the helper's API socket, when ports are published
    _own_dir: str | None = field(default=None, repr=False)

    @classmethod
    def prepare(cls, spec: SandboxSpec) -> Network | None:
        """Before the first fork: None unless the spec asks for the private network; the
        helper is looked up now, so that a missing one fails before anything starts."""
        if spec.network != "private":
            return None
        from builder.sandbox import slirp

        executable = slirp.find()
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        return cls(spec, executable, gate_r, gate_w)

    def child_side(self) -> None:
        """In the supervisor (and so in pid 1): only the gate's read end."""
        os.close(self.gate_w)

    def parent_side(self) -> None:
        os.close(self.gate_r)

    def up(self, target_pid: int, state: str) -> None:
        """Caller: TARGET_PID's network namespace exists; give it its network, open the gate.
        The API socket (for ports) goes in the sandbox's STATE dir."""
        try:
            from builder.sandbox import slirp

            self.api = self._api_socket(state) if self.spec.ports else None
            self.helper = slirp.Slirp.start(self.executable, target_pid, self.api)
            self.helper.wait_ready()
            for mapping in self.spec.ports:
                self.helper.publish(mapping)
            # No reader left: pid 1 ended before its network came (a start error, such as
            # an unknown USER, found before the gate), and its report says why.
            with contextlib.suppress(BrokenPipeError):
                os.write(self.gate_w, OPEN)
        except BaseException:
            self.close()  # pid 1 finds the gate shut and ends; the sandbox winds down
            raise

    def close(self) -> None:
        """Caller, after the sandbox: stop the helper; nothing of ours stays."""
        if self.helper is not None:
            self.helper.stop()
        if self.gate_w >= 0:  # once: the number may be another file's after the close
            os.close(self.gate_w)
            self.gate_w = -1
        if self.api is not None:  # killed, the helper leaves its socket behind
            with contextlib.suppress(OSError):
                os.unlink(self.api)
        if self._own_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._own_dir)

    def _api_socket(self, state: str) -> str:
        path = f"{state}/api.sock"
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            import tempfile  # (rare: a long store path) `run`'s start-up does not import it

            self._own_dir = tempfile.mkdtemp(prefix="builder-net-")
            path = f"{self._own_dir}/api.sock"
        return path


def wait_gate(gate_r: int) -> None:
    """Pid 1: block until the caller has given the namespace its network. A shut gate is
    never the cause of a failure (the caller has its reason, or is gone): end quietly."""
    try:
        answer = os.read(gate_r, 1)
    finally:
        os.close(gate_r)
    if answer != OPEN:
        os._exit(GATE_SHUT)
