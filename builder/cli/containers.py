"""`builder ps`, `logs`, `stop`, `rm`, `wait`: the containers `builder run` made, as
docker's verbs of the same names show and handle them (ids, short-id prefixes or names)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from builder.cli.common import open_store
from builder.errors import BuilderError
from builder.store import Store
from builder.store.containers import Container


def _each(
    ctx: click.Context, refs: tuple[str, ...], act: Callable[[Store, Container], str]
) -> None:
    """Apply `act` to each container named; like docker, go on after a failure, print one
    `error:` line for it, and exit with the last failure's code."""
    store = open_store(ctx)
    status = 0
    for ref in refs:
        try:
            out = act(store, store.containers.find(ref))
        except BuilderError as err:
            click.echo(f"error: {err.render()}", err=True)
            status = err.exit_code
            continue
        if out:
            click.echo(out)
    ctx.exit(status)


def _ago(seconds: float) -> str:
    """docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    return f"{hours // (24 * 7)} weeks"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(container: Container, now: float) -> dict[str, Any] | None:
    config = container.config()
    if config is None:
        return None  # being removed
    state = container.state()
    running = container.running()
    if running:
        status, shown = "running", f"Up {_ago(now - (state.started or config.created))}"
    elif state.status == "exited":
        ago = _ago(now - (state.finished or config.created))
        status, shown = "exited", f"Exited ({state.exit_code}) {ago} ago"
    else:  # its owner was killed before it could write an end
        status, shown = "dead", "Dead"
    return {
        "ID": container.id[:12],
        "Image": config.image,
        "Command": f'"{_clip(" ".join(config.command), 20)}"',
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(config.created)),
        "RunningFor": f"{_ago(now - config.created)} ago",
        "State": status,
        "Status": shown,
        "Ports": "",
        "Names": config.name,
        "_created": config.created,
    }


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only the ids.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ps(ctx: click.Context, show_all: bool, quiet: bool, fmt: str) -> None:
    """List containers (running ones; -a: all), newest first."""
    store = open_store(ctx)
    now = time.time()
    rows = [r for c in store.containers.list() if (r := _row(c, now)) is not None]
    rows = [r for r in rows if show_all or r["State"] == "running"]
    rows.sort(key=lambda r: -r["_created"])
    for r in rows:
        del r["_created"]
    if quiet:
        for r in rows:
            click.echo(r["ID"])
    elif fmt == "json":
        for r in rows:
            click.echo(json.dumps(r, sort_keys=True))
    else:
        heads = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
        keys = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")
        table = [list(heads)] + [[str(r[k]) for k in keys] for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(heads))]
        for line in table:
            click.echo("   ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container ends.")
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, follow: bool, container: str) -> None:
    """Print a detached container's output."""
    from builder.runtime.lifecycle import follow as read_log

    store = open_store(ctx)
    found = store.containers.find(container)
    out = sys.stdout.buffer
    for chunk in read_log(found, follow=follow):
        out.write(chunk)
        out.flush()


@click.command()
@click.option("-t", "--time", "--timeout", "timeout", type=int, help="Seconds before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Send the stop signal, then SIGKILL after the timeout (default: the container's, 10 s)."""
    from builder.runtime.lifecycle import stop as stop_one

    def act(_store: Store, c: Container) -> str:
        stop_one(c, timeout)
        return ""

    _each(ctx, containers, lambda s, c: act(s, c) or _given(containers, c))


def _given(refs: tuple[str, ...], container: Container) -> str:
    """docker prints each container as the user named it."""
    config = container.config()
    for ref in refs:
        if ref in (container.id, config.name if config else None) or container.id.startswith(ref):
            return ref
    return container.id


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, containers: tuple[str, ...]) -> None:
    """Remove containers and everything they left in the store."""
    from builder.runtime.lifecycle import remove

    def act(store: Store, c: Container) -> str:
        shown = _given(containers, c)
        remove(store.containers, c, force=force)
        return shown

    _each(ctx, containers, act)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until the containers end; print their exit codes."""
    from builder.runtime.lifecycle import wait as wait_one

    _each(ctx, containers, lambda _s, c: str(wait_one(c)))
