"""The `builder` command: a click group whose verbs are imported only when used.

Start-up time is part of every cached build, so `builder --help` imports no verb module and
a verb imports only what it needs. Library errors become `error: ...` and an exit code here,
and only here.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click

from builder.errors import BuilderError, StoreError

# verb -> "module:function" under builder.cli
VERBS = {
    "build": "build:build",
    "run": "run:run",
    "ps": "containers:ps",
    "logs": "containers:logs",
    "stop": "containers:stop",
    "rm": "containers:rm",
    "wait": "containers:wait",
    "import": "images:import_",
    "images": "images:images",
    "inspect": "images:inspect",
    "rmi": "images:rmi",
    "save": "archives:save",
    "load": "archives:load",
    "export": "archives:export",
    "tag": "images:tag",
    "pull": "registry:pull",
    "push": "registry:push",
    "login": "registry:login",
    "logout": "registry:logout",
    "prune": "prune:prune",
    "parse": "recipe:parse",
    "lint": "recipe:lint",
    "fsck": "fsck:fsck",
    "server": "server:server",
}


# Called with the exit status once the output is flushed, just before os._exit: a warm
# server's child reports it to its client there (builder/cli/zygote.py).
before_exit: Callable[[int], None] | None = None


def default_root() -> Path:
    if env := os.environ.get("BUILDER_ROOT"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/builder")
    return Path.home() / ".local" / "share" / "builder"


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = VERBS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(f"builder.cli.{module}"), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The store (default: $BUILDER_ROOT, else /var/lib/builder as root or"
    " ~/.local/share/builder).",
)
@click.version_option(package_name="builder")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """Build OCI images from Dockerfile recipes, without a daemon, and run them."""
    # Absolute: the sandbox and a detached container name store paths from other dirs.
    ctx.obj = (root if root is not None else default_root()).absolute()


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script (argv None: sys.argv) or an in-process call (tests)."""
    try:
        _main(argv)
    except SystemExit as done:
        threading = sys.modules.get("threading")  # not imported: no thread was started
        if argv is not None or (threading is not None and threading.active_count() > 1):
            raise  # a caller to return to, or threads the interpreter's exit must join
        _exit_now(done.code)


def _exit_now(code: object) -> NoReturn:
    """End the process without the interpreter's teardown. Freeing the objects of a few
    hundred modules took 35-40 ms of `builder run --rm IMAGE /bin/true` (issue 9), and
    builder leaves nothing for it to do: no atexit handler, no finalizer; the kernel closes
    the fds and drops the locks. Only the buffered output must be written first."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"), as the interpreter would print it
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            status = status or 141
        except (OSError, ValueError):
            pass
    if before_exit is not None:
        before_exit(status)
    os._exit(status)


def _main(argv: list[str] | None) -> NoReturn:
    try:
        status = cli.main(args=argv, prog_name="builder", standalone_mode=False)
        # Without standalone mode, click returns ctx.exit()'s code instead of exiting.
        sys.exit(status if isinstance(status, int) else 0)
    except BuilderError as err:
        click.echo(f"error: {err.render()}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as err:
        # A full disk where no writer named what it was writing: still one line, the
        # store's exit code (the writers' own cleanup has run on the way out).
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f": {err.filename}" if err.filename else ""
        click.echo(f"error: {os.strerror(err.errno).lower()}{where}", err=True)
        sys.exit(StoreError.exit_code)
