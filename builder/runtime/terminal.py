"""`run -t`: the container's stdio is a new pty; we relay between it and our own stdio.

The pty is made here, on the host: its slave becomes the container's stdin/stdout/stderr
and pid 1 makes it its controlling terminal (sandbox/container.py). One thread copies the
master's output to our stdout and, with -i, our stdin to the master. The window size is
copied from our terminal at start and on every SIGWINCH we get; the kernel then sends
SIGWINCH to the container's foreground process group, as a terminal would. With -i on a
terminal, ours is put in raw mode (keys, ^C included, reach the container's line
discipline as bytes) and restored at the end.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import termios
import threading
import tty
from types import FrameType


class Terminal:
    def __init__(self, out_fd: int, in_fd: int | None) -> None:
        self.master, self.slave = os.openpty()  # both close-on-exec
        self.out_fd = out_fd
        self.in_fd = in_fd
        self._saved_mode: list[object] | None = None
        self._saved_winch: object = None
        self._thread: threading.Thread | None = None
        self.copy_size()

    def copy_size(self) -> None:
        """Our terminal's size (stdout's, else stdin's) onto the container's pty."""
        for fd in (self.out_fd, self.in_fd):
            if fd is None:
                continue
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
                return

    def _on_winch(self, _signum: int, _frame: FrameType | None) -> None:
        self.copy_size()

    def __enter__(self) -> Terminal:
        with contextlib.suppress(ValueError):  # not the main thread: no resizing
            self._saved_winch = signal.signal(signal.SIGWINCH, self._on_winch)
        if self.in_fd is not None and os.isatty(self.in_fd):
            with contextlib.suppress(termios.error):
                self._saved_mode = termios.tcgetattr(self.in_fd)
                tty.setraw(self.in_fd)
        return self

    def start(self) -> None:
        """Start relaying. Called once the sandbox has forked: a fork with a second
        thread running may copy a lock that thread holds."""
        self._thread = threading.Thread(target=self._relay, name="pty-relay", daemon=True)
        self._thread.start()

    def __exit__(self, *_exc: object) -> None:
        os.close(self.slave)  # the container's copies are gone: the master reads EIO
        if self._thread is not None:
            self._thread.join()
        else:
            self._relay()  # the container never started: drain what setup wrote
        os.close(self.master)
        if self._saved_mode is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.in_fd, termios.TCSAFLUSH, self._saved_mode)  # type: ignore[arg-type]
        if self._saved_winch is not None:
            signal.signal(signal.SIGWINCH, self._saved_winch)  # type: ignore[arg-type]

    def _relay(self) -> None:
        watched = [self.master] + ([self.in_fd] if self.in_fd is not None else [])
        while True:
            ready, _, _ = select.select(watched, [], [])
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError as err:
                    if err.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return  # every slave is closed
                _write_all(self.out_fd, data)
            if self.in_fd is not None and self.in_fd in ready:
                data = os.read(self.in_fd, 65536)
                if data:
                    _write_all(self.master, data)
                else:
                    watched.remove(self.in_fd)  # our stdin ended; the container's stays open


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BrokenPipeError:
            return  # nobody reads our output any more: drop it, keep draining
