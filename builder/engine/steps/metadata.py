"""Steps that change only the image config: a history entry with empty_layer, no layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from builder.engine import cachekey
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext, history
from builder.image.config import Healthcheck
from builder.image.duration import format_duration
from builder.recipe import instructions as ins
from builder.recipe.gostr import go_quote
from builder.recipe.resolve import resolve
from builder.recipe.values import expose_ports
from builder.record import replace


def _apply(
    state: ImageState, ctx: StepContext, created_by: str, kind: str, payload: object, **changes: Any
) -> ImageState:
    cc = replace(state.config.config, **changes)
    config = state.config.with_container_config(cc).with_history(
        history(state.created, created_by, empty_layer=True)
    )
    key = cachekey.chain(state.key, kind, payload)
    return state.step(config, key)


# History lines are BuildKit's Go format strings: `%q` of a []string is `["a" "b"]`, `%v`
# is `[a b]`; `docker history` users and reproducibility checkers compare them verbatim.
def _go_q(words: tuple[str, ...] | list[str]) -> str:
    return "[" + " ".join(go_quote(w) for w in words) + "]"


def _go_v(words: tuple[str, ...] | list[str]) -> str:
    return "[" + " ".join(words) + "]"


def shell_of(state: ImageState) -> list[str]:
    return list(state.config.config.shell or ("/bin/sh", "-c"))


def _command(state: ImageState, command: tuple[str, ...], exec_form: bool) -> tuple[str, ...]:
    return tuple(command) if exec_form else (*shell_of(state), command[0] if command else "")


def env_step(instr: ins.Env, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Env)
    for name, value in resolved.pairs:
        ctx.scope.set_env(name, value)
    text = " ".join(f"{k}={v}" for k, v in resolved.pairs)
    return _apply(
        state, ctx, f"ENV {text}", "ENV", resolved.pairs, env=tuple(ctx.scope.image_env())
    )


def label_step(instr: ins.Label, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Label)
    labels = dict(state.config.config.labels or {})
    labels.update(dict(resolved.pairs))
    text = " ".join(f"{k}={v}" for k, v in resolved.pairs)
    return _apply(state, ctx, f"LABEL {text}", "LABEL", resolved.pairs, labels=labels)


def user_step(instr: ins.User, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.User)
    return _apply(state, ctx, f"USER {resolved.user}", "USER", resolved.user, user=resolved.user)


def cmd_step(instr: ins.Cmd, state: ImageState, ctx: StepContext) -> ImageState:
    cmd = _command(state, instr.command, instr.exec_form)
    # BuildKit sets ArgsEscaped on every CMD (exec or shell form, any SHELL), never on
    # ENTRYPOINT, for the Docker image spec; it is in the config digest.
    # An empty exec form leaves Cmd out (Go's omitempty), the inherited one included.
    new = _apply(state, ctx, f"CMD {_go_q(cmd)}", "CMD", cmd, cmd=cmd or None, args_escaped=True)
    return replace(new, cmd_set_in_stage=True)


def entrypoint_step(instr: ins.Entrypoint, state: ImageState, ctx: StepContext) -> ImageState:
    entry = _command(state, instr.command, instr.exec_form)
    changes: dict[str, Any] = {"entrypoint": entry or None}  # [] is left out, as CMD []
    if not state.cmd_set_in_stage:
        changes["cmd"] = None  # docker: a new ENTRYPOINT drops the base image's CMD
    return _apply(state, ctx, f"ENTRYPOINT {_go_q(entry)}", "ENTRYPOINT", entry, **changes)


def shell_step(instr: ins.Shell, state: ImageState, ctx: StepContext) -> ImageState:
    return _apply(
        state, ctx, f"SHELL {_go_v(instr.argv)}", "SHELL", instr.argv, shell=tuple(instr.argv)
    )


def expose_step(instr: ins.Expose, state: ImageState, ctx: StepContext) -> ImageState:
    # BuildKit sorts the ports as written, before expansion; the history keeps that order.
    instr = replace(instr, ports=tuple(sorted(instr.ports)))
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Expose)
    names = [name for p in resolved.ports for name in expose_ports(p)]
    ports = tuple(dict.fromkeys((*state.config.config.exposed_ports, *names)))
    return _apply(
        state,
        ctx,
        f"EXPOSE {_go_v(names)}",
        "EXPOSE",
        names,
        exposed_ports=ports,
    )


def volume_step(instr: ins.Volume, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Volume)
    volumes = tuple(dict.fromkeys((*state.config.config.volumes, *resolved.paths)))
    return _apply(
        state,
        ctx,
        f"VOLUME {_go_v(resolved.paths)}",
        "VOLUME",
        resolved.paths,
        volumes=volumes,
    )


def stopsignal_step(instr: ins.Stopsignal, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Stopsignal)
    return _apply(
        state,
        ctx,
        f"STOPSIGNAL {resolved.signal}",
        "STOPSIGNAL",
        resolved.signal,
        stop_signal=resolved.signal,
    )


def _healthcheck_text(check: Healthcheck) -> str:
    """Go's `%+v` of BuildKit's HealthcheckConfig."""
    times = (
        ("Interval", check.interval),
        ("Timeout", check.timeout),
        ("StartPeriod", check.start_period),
        ("StartInterval", check.start_interval),
    )
    fields = " ".join(f"{name}:{format_duration(ns)}" for name, ns in times)
    return f"{{Test:{_go_v(check.test)} {fields} Retries:{check.retries}}}"


def healthcheck_step(instr: ins.Healthcheck, state: ImageState, ctx: StepContext) -> ImageState:
    check = Healthcheck(
        test=tuple(instr.test),
        interval=instr.interval,
        timeout=instr.timeout,
        start_period=instr.start_period,
        start_interval=instr.start_interval,
        retries=instr.retries,
    )
    return _apply(
        state,
        ctx,
        f"HEALTHCHECK {_healthcheck_text(check)}",
        "HEALTHCHECK",
        check.to_json(),
        healthcheck=check,
    )


def onbuild_step(instr: ins.Onbuild, state: ImageState, ctx: StepContext) -> ImageState:
    """The trigger goes into the config; BuildKit writes no history entry for ONBUILD."""
    triggers = (*(state.config.config.on_build or ()), instr.trigger)
    cc = replace(state.config.config, on_build=triggers)
    key = cachekey.chain(state.key, "ONBUILD", instr.trigger)
    return state.step(state.config.with_container_config(cc), key)


def maintainer_step(instr: ins.Maintainer, state: ImageState, ctx: StepContext) -> ImageState:
    config = replace(state.config, author=instr.name).with_history(
        history(state.created, f"MAINTAINER {instr.name}", empty_layer=True)
    )
    return state.step(config, cachekey.chain(state.key, "MAINTAINER", instr.name))


def arg_step(instr: ins.Arg, state: ImageState, ctx: StepContext) -> ImageState:
    """ARG changes the scope, and adds an empty-layer history entry `ARG a=1 b` (BuildKit's).

    Each default sees the args declared before it, and is not expanded at all when a
    --build-arg gives the value (its expansion may fail: BuildKit never runs it)."""
    written: list[str] = []
    for name, default in instr.args:
        one = replace(instr, args=((name, None if ctx.scope.has_build_arg(name) else default),))
        resolved = resolve(one, ctx.scope.expansion_env(), ctx.escape)
        assert isinstance(resolved, ins.Arg)
        ((name, value),) = resolved.args
        ctx.scope.declare_arg(name, value)
        current = ctx.scope.arg_value(name)
        written.append(name if current is None else f"{name}={current}")
    # The key does not change: as in BuildKit, a value reaches the key of the steps that
    # use it (RUN's env, an expanded field), not of every step after the ARG.
    config = state.config.with_history(
        history(state.created, f"ARG {' '.join(written)}", empty_layer=True)
    )
    return state.step(config, state.key)


Handler = Callable[[Any, ImageState, StepContext], ImageState]

METADATA_HANDLERS: dict[type[ins.Instruction], Handler] = {
    ins.Env: env_step,
    ins.Label: label_step,
    ins.User: user_step,
    ins.Cmd: cmd_step,
    ins.Entrypoint: entrypoint_step,
    ins.Shell: shell_step,
    ins.Expose: expose_step,
    ins.Volume: volume_step,
    ins.Stopsignal: stopsignal_step,
    ins.Healthcheck: healthcheck_step,
    ins.Onbuild: onbuild_step,
    ins.Maintainer: maintainer_step,
}
