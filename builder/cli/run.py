"""`builder run`: start a container from an image and exit with its status."""

from __future__ import annotations

import sys

import click

from builder.cli import limits
from builder.cli.common import open_store


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--rm", "remove", is_flag=True, help="Remove the container's writable layer at exit.")
@click.option("-e", "--env", "env", multiple=True, help="Set KEY=VALUE in the environment.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP] to run as.")
@click.option("--entrypoint", help="Replace the image's ENTRYPOINT.")
@click.option("--network", type=click.Choice(["none", "host"]), default="none", show_default=True)
@click.option("--hostname", help="The container's hostname.")
@limits.options
# -- isolation (docker's flags; sandbox/security.py) --
@click.option("--cap-add", multiple=True, metavar="CAP", help="Add a capability (NET_ADMIN, ALL).")
@click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a capability (ALL: all).")
@click.option(
    "--security-opt",
    multiple=True,
    metavar="OPT",
    help="seccomp=unconfined|builtin|PROFILE.json (Docker's format), no-new-privileges.",
)
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
    hostname: str | None,
    memory: str | None,
    memory_swap: str | None,
    cpus: str | None,
    pids_limit: int | None,
    cgroup_parent: str | None,
    cap_add: tuple[str, ...],
    cap_drop: tuple[str, ...],
    security_opt: tuple[str, ...],
) -> None:
    """Run IMAGE's entrypoint/cmd (or COMMAND) and exit with its exit status."""
    from builder.runtime import RunOptions, run_image
    from builder.sandbox.security import from_flags

    options = RunOptions(
        image=image,
        args=command,
        entrypoint=entrypoint,
        env=env,
        workdir=workdir,
        user=user,
        network=network,
        hostname=hostname,
        remove=remove,
        limits=limits.limits(memory, memory_swap, cpus, pids_limit, cgroup_parent),
        security=from_flags(cap_add, cap_drop, security_opt),
    )
    sys.stdout.flush()
    ctx.exit(run_image(open_store(ctx), options))
