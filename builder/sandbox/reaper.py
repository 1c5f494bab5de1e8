"""`run --init`: pid 1 stays a tiny init instead of exec-ing the command (docker's tini).

It forks the command, forwards the signals it gets to it, reaps every orphan the pid
namespace hands it (a zombie pid 1 never waits for would pile up), and exits with the
command's status when the command ends; the kernel then kills what is left in the namespace.
Without it, the command is pid 1: the kernel drops the signals it installed no handler for
(a `sleep` ignores SIGTERM) and nobody reaps orphans of a command that never waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType

from builder.sandbox.sigproxy import proxied

# What tini forwards: every signal a user or `builder stop` may send, as docker's CLI
# forwards them (sigproxy.py: SIGCHLD is ours, SIGKILL and SIGSTOP cannot be caught).
FORWARDED = proxied()


def run(start: Callable[[], int], exec_w: int = -1) -> int:
    """Fork `start` (which execs the command, or returns the status to _exit with); reap
    until it ends; its status, 128+N when killed by signal N. `exec_w` (the caller's exec
    pipe) is left to the command: its exec is what closes it."""
    # Named before the fork: a fast command (`ps`) must not see pid 1 as "python" yet. The
    # child's own name comes with its exec.
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write("init")  # what `ps` in the container shows as pid 1, not "python"
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            code = start()
        finally:
            os._exit(code)
    if exec_w >= 0:
        os.close(exec_w)

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    return _reap(pid)


def _reap(command: int) -> int:
    while True:
        try:
            done, status = os.waitpid(-1, 0)  # PEP 475: a forwarded signal does not end it
        except ChildProcessError:
            return 127  # cannot happen: the command is our child until reaped here
        if done == command:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
