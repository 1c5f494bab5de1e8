"""`builder run`: start a container from an image and exit with its status."""

from __future__ import annotations

import sys

import click

from builder.cli import netflags
from builder.cli.common import open_store


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--rm", "remove", is_flag=True, help="Remove the container's writable layer at exit.")
@click.option("-e", "--env", "env", multiple=True, help="Set KEY=VALUE in the environment.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP] to run as.")
@click.option("--entrypoint", help="Replace the image's ENTRYPOINT.")
@click.option(
    "--network",
    type=click.Choice(["bridge", "default", "none", "host"]),
    default="bridge",
    show_default=True,
    help="bridge (default): a private network with outbound access; none: loopback only.",
)
@click.option(
    "-p",
    "--publish",
    "publish",
    multiple=True,
    metavar="[IP:]HOSTPORT:CTRPORT[/PROTO]",
    help="Publish a container's port on the host (repeatable).",
)
@netflags.add_host_option
@click.option("--hostname", help="The container's hostname.")
@click.pass_context
def run(
    ctx: click.Context,
    image: str,
    command: tuple[str, ...],
    remove: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    entrypoint: str | None,
    network: str,
    publish: tuple[str, ...],
    add_hosts: tuple[str, ...],
    hostname: str | None,
) -> None:
    """Run IMAGE's entrypoint/cmd (or COMMAND) and exit with its exit status."""
    from builder.runtime import RunOptions, run_image

    options = RunOptions(
        image=image,
        args=command,
        entrypoint=entrypoint,
        env=env,
        workdir=workdir,
        user=user,
        network=network,
        add_hosts=netflags.add_hosts(add_hosts),
        ports=netflags.ports(publish),
        hostname=hostname,
        remove=remove,
    )
    sys.stdout.flush()
    ctx.exit(run_image(open_store(ctx), options))
