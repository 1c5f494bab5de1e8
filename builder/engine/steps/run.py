"""RUN: a command in the sandbox on an overlay of the parent layers; the upper dir is the layer."""

from __future__ import annotations

from builder.engine import cachekey
from builder.engine.executor import Mount, OverlayRoot, Process
from builder.engine.options import NETWORK_HOST, SECURITY_INSECURE
from builder.engine.runmounts import (
    PreparedMounts,
    bind_key,
    cache_dir,
    materialize,
    secret_file,
)
from builder.engine.state import ImageState
from builder.engine.steps.base import (
    StepContext,
    heredoc_body,
    is_heredoc_marker,
    run_env,
    shown,
)
from builder.engine.steps.layer_step import (
    cached_layer,
    commit_layer,
    execute_in_overlay,
)
from builder.engine.steps.metadata import shell_of
from builder.errors import RecipeError, StepFailed
from builder.recipe import instructions as ins
from builder.recipe.mounts import MountError, RunMount
from builder.recipe.resolve import resolve
from builder.sandbox.spec import NetworkMode


def _script(instr: ins.Run) -> str:
    """The shell script of a shell-form RUN, with its heredocs (BuildKit's rules).

    A RUN that is nothing but one heredoc runs the heredoc's body as the script; otherwise
    the command line is followed by the bodies and terminators, for the shell to read.
    """
    command = instr.command[0]
    if not instr.heredocs:
        return command
    bodies = [heredoc_body(h) for h in instr.heredocs]
    if len(instr.heredocs) == 1 and is_heredoc_marker(command):
        return bodies[0]
    parts = [command]
    for heredoc, body in zip(instr.heredocs, bodies, strict=True):
        parts.append(body + heredoc.name)
    return "\n".join(parts) + "\n"


def _mounts(instr: ins.Run, ctx: StepContext) -> list[RunMount]:
    """The mounts, parsed (and refused if not valid) by resolve() as lint parses them."""
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Run)
    return list(resolved.run_mounts)


def _mount_key(mount: RunMount, ctx: StepContext, instr: ins.Run) -> list[object]:
    """What a mount adds to the key: its shape, and for a context bind its content."""
    shape: list[object] = [mount.type, mount.target, mount.readonly, mount.id]
    if mount.type == "bind":
        try:
            shape.append(bind_key(ctx.context, mount.source or "."))
        except MountError as err:
            raise RecipeError(str(err), instr.location) from None
    return shape


def _prepare(mounts: list[RunMount], ctx: StepContext, instr: ins.Run) -> PreparedMounts:
    """Sandbox mounts for a step that runs (on a cache hit nothing is prepared)."""
    prepared = PreparedMounts()
    try:
        for m in mounts:
            if m.type == "bind":
                staging = ctx.store.tmp_dir("bind")
                prepared.cleanup.append(staging)
                source = materialize(ctx.context, m.source or ".", staging / "src")
                prepared.mounts.append(Mount(m.target, "bind", source, m.readonly))
            elif m.type == "cache":
                directory = cache_dir(ctx.store.cache_mounts, m)
                if m.sharing == "locked":  # one build at a time uses it
                    prepared.lock(directory)
                prepared.mounts.append(Mount(m.target, "bind", directory, m.readonly))
            elif m.type == "tmpfs":
                prepared.mounts.append(Mount(m.target, "tmpfs", None, readonly=False))
            elif m.type == "secret":
                staging = ctx.store.tmp_dir("secret")
                prepared.cleanup.append(staging)
                secret = secret_file(ctx.secrets, m, staging)
                if secret is not None:
                    prepared.mounts.append(Mount(m.target, "bind", secret, readonly=True))
    except MountError as err:
        prepared.close()
        raise RecipeError(str(err), instr.location) from None
    except BaseException:
        prepared.close()
        raise
    return prepared


# RUN's and the build's network names (BuildKit's) as the sandbox calls them.
SANDBOX_NETWORK: dict[str, NetworkMode] = {"default": "private", "none": "none", "host": "host"}


def _entitle(instr: ins.Run, network: str, ctx: StepContext) -> None:
    """Refuse what the build did not allow, as BuildKit does before a step runs (and before
    its cache is looked up: a cached layer made with the host network is no exception)."""
    for asked, flag, entitlement in (
        (network == "host", "--network=host", NETWORK_HOST),
        (instr.security == "insecure", "--security=insecure", SECURITY_INSECURE),
    ):
        if asked and entitlement not in ctx.allow:
            raise RecipeError(
                f"RUN {flag}: {entitlement} is not allowed",
                instr.location,
                f"allow it with --allow {entitlement}",
            )
    if instr.security == "insecure":
        raise RecipeError(
            "RUN --security=insecure is not supported yet",
            instr.location,
            "RUN steps always run in the sandbox",
        )


def run_step(instr: ins.Run, state: ImageState, ctx: StepContext) -> ImageState:
    cc = state.config.config
    network = instr.network if instr.network not in (None, "default") else ctx.network
    _entitle(instr, network, ctx)
    mounts = _mounts(instr, ctx)
    argv = tuple(instr.command) if instr.exec_form else (*shell_of(state), _script(instr))
    env = run_env(ctx.scope.run_env())
    created_by = f"RUN {' '.join(argv)} # buildkit"
    payload: dict[str, object] = {
        "argv": argv,
        "env": env,
        "cwd": cc.working_dir or "/",
        "user": cc.user or "",
        "network": network,
    }
    if ctx.add_hosts:  # BuildKit keys a step by its extra hosts too
        payload["add_hosts"] = [[h.name, h.address] for h in ctx.add_hosts]
    if mounts:
        payload["mounts"] = [_mount_key(m, ctx, instr) for m in mounts]
    key = cachekey.chain(state.key, "RUN", payload)
    hit = cached_layer(state, ctx, key, created_by)
    if hit is not None:
        return hit

    def launch(root: OverlayRoot, output: int) -> int:
        process = Process(
            argv=argv,
            env=tuple(env),
            cwd=cc.working_dir or "/",
            user=cc.user or "",
            network=SANDBOX_NETWORK[network],
            mounts=tuple(prepared.mounts),
            extra_hosts=ctx.add_hosts,
        )
        return ctx.executor.run(root, process, output)

    prepared = _prepare(mounts, ctx, instr)
    try:
        status, root, _last = execute_in_overlay(state, ctx, launch)
    finally:
        prepared.close()
    if status != 0:
        raise StepFailed(
            f"{shown(instr)}: the command exited with status {status}", status, instr.location
        )
    return commit_layer(state, ctx, key, created_by, root)
