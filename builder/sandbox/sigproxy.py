"""Which signals a caller passes on to the container's pid 1: docker run's sig-proxy.

docker's CLI catches every signal and forwards each to the container except SIGCHLD and
SIGPIPE (about the CLI's own children and pipes) and SIGURG (the Go runtime's own); SIGKILL
and SIGSTOP cannot be caught. We also keep the fault signals (SEGV, BUS, FPE, ILL, TRAP,
SYS) to ourselves: a Python handler for a real fault of ours would return into it again;
and SIGTTIN/SIGTTOU, which are about our own use of the terminal: caught, a background
CLI's write with `stty tostop` would get one, restart and get another, for ever.
With a pty, SIGWINCH stays the terminal relay's (a resize of the pty makes the kernel send
it to the container's foreground group, as a terminal does).
"""

from __future__ import annotations

import signal

_NEVER = frozenset(
    {
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGCHLD,
        signal.SIGPIPE,
        signal.SIGURG,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGTRAP,
        signal.SIGSYS,
        signal.SIGTTIN,
        signal.SIGTTOU,
    }
)


# Numbers, once: signal.valid_signals() makes a Signals enum of each of the ~65 (~0.3 ms,
# more in a warm server's forked child, where every object it touches is a page to copy),
# and `builder run` asked on every call (issue 9).
_VALID = tuple(sorted(int(s) for s in signal.valid_signals()))


def proxied(*, tty: bool = False) -> tuple[int, ...]:
    """Every signal `builder run` forwards, real-time ones included, in number order."""
    skip = _NEVER | {signal.SIGWINCH} if tty else _NEVER
    return tuple(s for s in _VALID if s not in skip)
