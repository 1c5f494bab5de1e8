"""`builder run`: start a container from an image, as `docker run` is typed.

Exit codes are docker's: 125 when the container could not be started (a bad flag too),
126/127 when its command cannot be executed / is not found, else the command's status.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from builder.cli import limits, netflags, snapshotter
from builder.cli.common import open_store
from builder.errors import BuilderError, RunFailed
from builder.sandbox.spec import ExecFailed

if TYPE_CHECKING:
    from builder.sandbox import Mount


class _DockerRun(click.Command):
    """Every failure before the container's process runs exits 125, as docker run's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            raise RunFailed(err.format_message()) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RunFailed, ExecFailed):
            raise
        except click.UsageError as err:
            raise RunFailed(err.format_message()) from None
        except BuilderError as err:
            raise RunFailed(err.render()) from None


@click.command(
    cls=_DockerRun,
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False},
)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Give the container a terminal (a pty).")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--name", help="The container's name (unique).")
@click.option("-e", "--env", "env", multiple=True, help="Set KEY=VALUE in the environment.")
@click.option("--env-file", "env_files", multiple=True, help="Read KEY=VALUE lines from a file.")
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
@netflags.userns_option
@click.option("--hostname", help="The container's hostname.")
@click.option("-v", "--volume", "volumes", multiple=True, help="Bind HOST:CONTAINER[:ro].")
@click.option("--mount", "mount_specs", multiple=True, help="type=bind|tmpfs,... (docker's).")
@click.option("--tmpfs", "tmpfs", multiple=True, help="Mount a tmpfs: PATH[:size=64m,...].")
@click.option("--read-only", "readonly", is_flag=True, help="Make the root read-only.")
@click.option("--init", is_flag=True, help="Run a reaper as pid 1 that forwards signals.")
@click.option("--stop-signal", help="Signal `builder stop` sends (default: the image's).")
@click.option("--stop-timeout", type=int, help="Seconds before SIGKILL after it (default 10).")
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
def run(ctx: click.Context, /, image: str, command: tuple[str, ...], **flags: Any) -> None:
    """Run IMAGE's entrypoint/cmd (or COMMAND) and exit with its exit status."""
    from builder.runtime import RunOptions, run_image
    from builder.sandbox.security import from_flags

    env: list[str] = []
    if flags["env_files"]:  # imported only when used: `run --rm IMAGE` is timed (issue 9)
        from builder.runtime.envfile import read_env_file

        env = [item for path in flags["env_files"] for item in read_env_file(path)]
    mounts: tuple[Mount, ...] = ()
    if flags["volumes"] or flags["mount_specs"] or flags["tmpfs"]:
        from builder.runtime.volumes import parse_mount, parse_tmpfs, parse_volume

        mounts = (
            *(parse_volume(v) for v in flags["volumes"]),
            *(parse_mount(m) for m in flags["mount_specs"]),
            *(parse_tmpfs(t) for t in flags["tmpfs"]),
        )
    options = RunOptions(
        image=image,
        args=command,
        entrypoint=flags["entrypoint"],
        env=(*env, *flags["env"]),  # -e wins over --env-file, as docker's
        workdir=flags["workdir"],
        user=flags["user"],
        network=flags["network"],
        userns=flags["userns"],
        add_hosts=netflags.add_hosts(flags["add_hosts"]),
        ports=netflags.ports(flags["publish"]),
        hostname=flags["hostname"],
        remove=flags["remove"],
        mounts=mounts,
        readonly=flags["readonly"],
        interactive=flags["interactive"],
        tty=flags["tty"],
        name=flags["name"],
        init=flags["init"],
        stop_signal=flags["stop_signal"],
        stop_timeout=flags["stop_timeout"],
        detach=flags["detach"],
        limits=limits.limits(
            flags["memory"],
            flags["memory_swap"],
            flags["cpus"],
            flags["pids_limit"],
            flags["cgroup_parent"],
        ),
        security=from_flags(flags["cap_add"], flags["cap_drop"], flags["security_opt"]),
        snapshotter=snapshotter.forced(),
    )
    store = open_store(ctx)
    if options.detach:
        from builder.runtime.detached import DetachedExecFailed, run_detached

        try:
            click.echo(run_detached(store, options))
        except DetachedExecFailed as err:  # docker prints the id it made, then the error
            click.echo(err.container_id)
            raise
        return
    sys.stdout.flush()
    ctx.exit(run_image(store, options))


# Click builds a command's --help option on each parse and keeps it on the command: made
# here, at import, a warm server's forked child finds it made (one gettext lookup, four
# stats of message catalogs, and an Option, fewer on every call).
run.get_help_option(click.Context(run, help_option_names=["-h", "--help"]))
