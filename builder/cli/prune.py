"""`builder prune`: give back the disk space nothing needs (docker's `system prune`)."""

from __future__ import annotations

import click

from builder.cli.common import open_store


@click.command()
@click.option(
    "-a",
    "--all",
    "everything",
    is_flag=True,
    help="Also drop the build cache and RUN cache mounts (the next build runs every step).",
)
@click.pass_context
def prune(ctx: click.Context, everything: bool) -> None:
    """Remove kept containers and every blob and layer no image (or cache record) needs."""
    freed = open_store(ctx).gc(prune_cache=everything, prune_containers=True)
    click.echo(f"freed {freed / 1e6:.1f} MB")
