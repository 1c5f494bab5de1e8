"""`run -d`: the container runs under a supervisor process that outlives the CLI.

The CLI prepares the container (so a bad image or name fails at once, exit 125), then
double-forks: the middle child calls setsid and exits, so the supervisor is in a session
of its own, re-parented to init (or the nearest subreaper), and no terminal's hangup or ^C
reaches it. The supervisor inherits the container's owner lock and the store lease (flocks
live as long as any process holds them), sends its output to the container's log file, and
runs the container exactly as an attached run would (container.execute). It tells the CLI
over a pipe once the command was executed ("S"), why the container could not start
("E<message>": exit 125), or why its command could not be executed ("C<code> <message>":
126/127, as docker run -d); the CLI then prints the id (and the error), and exits.
"""

from __future__ import annotations

import contextlib
import os
import sys

from builder.errors import BuilderError, RunFailed
from builder.runtime.container import Prepared, RunOptions, execute, prepare
from builder.sandbox.spec import ExecFailed
from builder.store import Store


def run_detached(store: Store, options: RunOptions) -> str:
    """Start the container in the background; its id once its command was executed."""
    with store.lease():
        prepared = prepare(store, options)
        container = prepared.container
        for stream in (sys.stdout, sys.stderr):  # the children must not repeat them
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        try:
            middle = os.fork()
        except OSError:
            _abandon(store, prepared)
            raise
        if middle == 0:
            os.close(report_r)
            _middle(store, prepared, report_w)
        os.close(report_w)
        os.close(container.owner_fd)  # the supervisor holds its own copy now
        try:
            os.waitpid(middle, 0)
            message = _read_report(report_r)
        finally:
            os.close(report_r)
    if message.startswith("S"):
        return container.id
    if message.startswith("E"):
        raise RunFailed(message[1:].strip())
    if message.startswith("C"):  # docker run -d: the exec's error and code
        code, _, text = message[1:].partition(" ")
        raise DetachedExecFailed(text.strip(), int(code), container.id)
    raise RunFailed("the container's supervisor ended before the container started")


class DetachedExecFailed(ExecFailed):
    """The command of a detached container could not be executed. docker's CLI still
    prints the container's id (it made it before starting it), then the error."""

    def __init__(self, message: str, code: int, container_id: str) -> None:
        super().__init__(message, code)
        self.container_id = container_id


def _abandon(store: Store, prepared: Prepared) -> None:
    store.containers.remove(prepared.container)
    os.close(prepared.container.owner_fd)


def _read_report(fd: int) -> str:
    """ "S" as soon as it comes (the sandbox's own processes hold the pipe open while the
    container runs), or everything up to EOF."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
        if chunks[0].startswith(b"S"):
            break
    return b"".join(chunks).decode(errors="replace")


def _middle(store: Store, prepared: Prepared, report_w: int) -> None:
    code = 1
    try:
        os.setsid()
        code = _supervise(store, prepared, report_w) if os.fork() == 0 else 0
    except BaseException as err:  # a child must end in _exit whatever happens
        _say(report_w, "E" + (str(err) if isinstance(err, BuilderError) else repr(err)))
    finally:
        os._exit(code)


def _supervise(store: Store, prepared: Prepared, report_w: int) -> int:
    container = prepared.container
    log = os.open(container.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    # The CLI's stdio may be a pipe its caller reads to EOF: let go of it at once.
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0, 1, 2 outlive any with-block
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    told = False

    def started() -> None:
        nonlocal told
        told = True
        _say(report_w, "S")
        os.close(report_w)

    try:
        return execute(store, prepared, started)
    except ExecFailed as err:
        _say(report_w, f"C{err.exit_code} {err.render()}")
        return err.exit_code
    except BuilderError as err:
        if not told:
            _say(report_w, "E" + err.render())
        else:
            print(f"error: {err.render()}", file=sys.stderr)
        return 125


def _say(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode(errors="replace"))
