"""`builder import -c/--change`: Dockerfile instructions applied to an image config, as
`docker import --change` (moby's BuildFromConfig) applies them.

Only the instructions that change the config are valid; values are expanded with the
config's own env. As docker's classic builder on Linux, a CMD sets no ArgsEscaped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from builder.errors import UsageError
from builder.image.config import ContainerConfig, Healthcheck
from builder.recipe import instructions as ins
from builder.recipe import load
from builder.recipe.resolve import resolve
from builder.recipe.values import expose_ports
from builder.record import replace

# moby's validCommitCommands
VALID = frozenset(
    {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD"}
    | {"STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)


def _env(config: ContainerConfig) -> dict[str, str]:
    return dict(entry.partition("=")[::2] for entry in config.env)


def _argv(config: ContainerConfig, command: tuple[str, ...], exec_form: bool) -> tuple[str, ...]:
    if exec_form:
        return command
    return (*(config.shell or ("/bin/sh", "-c")), command[0] if command else "")


def _apply(config: ContainerConfig, instr: ins.Instruction, cmd_set: bool) -> ContainerConfig:
    r = resolve(instr, _env(config), "\\")
    match r:
        case ins.Env():
            env = _env(config)
            env.update(r.pairs)
            return replace(config, env=tuple(f"{k}={v}" for k, v in env.items()))
        case ins.Label():
            return replace(config, labels={**config.labels, **dict(r.pairs)})
        case ins.Cmd():
            return replace(config, cmd=_argv(config, r.command, r.exec_form), args_escaped=False)
        case ins.Entrypoint():
            entry = _argv(config, r.command, r.exec_form)
            return replace(config, entrypoint=entry, cmd=config.cmd if cmd_set else None)
        case ins.Expose():
            ports = (*config.exposed_ports, *(k for p in r.ports for k in expose_ports(p)))
            return replace(config, exposed_ports=tuple(dict.fromkeys(ports)))
        case ins.Volume():
            return replace(config, volumes=tuple(dict.fromkeys((*config.volumes, *r.paths))))
        case ins.User():
            return replace(config, user=r.user)
        case ins.Workdir():
            path = posixpath.normpath(posixpath.join(config.working_dir or "/", r.path))
            return replace(config, working_dir=path)
        case ins.Onbuild():
            return replace(config, on_build=(*config.on_build, r.trigger))
        case ins.Stopsignal():
            return replace(config, stop_signal=r.signal)
        case ins.Healthcheck():
            check = Healthcheck(
                test=r.test,
                interval=r.interval,
                timeout=r.timeout,
                start_period=r.start_period,
                start_interval=r.start_interval,
                retries=r.retries,
            )
            return replace(config, healthcheck=check)
    raise AssertionError(instr.keyword)  # VALID holds only the cases above


def apply_changes(config: ContainerConfig, changes: Sequence[str]) -> ContainerConfig:
    """`config` with each change applied in order; UsageError for one docker refuses."""
    if not changes:
        return config
    recipe = load("\n".join(changes) + "\n", filename="--change")
    for instr in recipe.instructions:
        if instr.keyword not in VALID:
            # moby's words (the keyword in the parser's lower case)
            raise UsageError(f"{instr.keyword.lower()} is not a valid change command")
    cmd_set = False
    for instr in recipe.instructions:
        config = _apply(config, instr, cmd_set)
        cmd_set = cmd_set or isinstance(instr, ins.Cmd)
    return config
