"""RUN: a command in the sandbox on an overlay of the parent layers; the upper dir is the layer."""

from __future__ import annotations

import re

from builder.build import cachekey
from builder.build.state import ImageState
from builder.build.steps.base import StepContext, heredoc_body, run_env, shown
from builder.build.steps.layer_step import (
    cached_layer,
    commit_layer,
    execute_in_overlay,
)
from builder.build.steps.metadata import shell_of
from builder.errors import RecipeError, StepFailed
from builder.recipe import instructions as ins


def _script(instr: ins.Run) -> str:
    """The shell script of a shell-form RUN, with its heredocs (BuildKit's rules).

    A RUN that is nothing but one heredoc runs the heredoc's body as the script; otherwise
    the command line is followed by the bodies and terminators, for the shell to read.
    """
    command = instr.command[0]
    if not instr.heredocs:
        return command
    bodies = [heredoc_body(h) for h in instr.heredocs]
    if len(instr.heredocs) == 1 and re.fullmatch(r"\d*<<-?\s*\S+", command.strip()):
        return bodies[0]
    parts = [command]
    for heredoc, body in zip(instr.heredocs, bodies, strict=True):
        parts.append(body + heredoc.name)
    return "\n".join(parts) + "\n"


def run_step(instr: ins.Run, state: ImageState, ctx: StepContext) -> ImageState:
    if instr.mounts:
        raise RecipeError("RUN --mount is not supported yet", instr.location)
    argv = tuple(instr.command) if instr.exec_form else (*shell_of(state), _script(instr))
    env = run_env(ctx.scope.run_env())
    cc = state.config.config
    network = instr.network if instr.network not in (None, "default") else ctx.network
    created_by = f"RUN {' '.join(argv)} # buildkit"
    payload = {
        "argv": argv,
        "env": env,
        "cwd": cc.working_dir or "/",
        "user": cc.user or "",
        "network": network,
    }
    key = cachekey.chain(state.key, "RUN", payload)
    hit = cached_layer(state, ctx, key, created_by)
    if hit is not None:
        return hit
    from builder.sandbox import DEVNULL, OverlayRoot, SandboxSpec, run  # only on a miss

    def launch(root: OverlayRoot, output: int) -> int:
        return run(
            SandboxSpec(
                root=root,
                argv=argv,
                env=tuple(env),
                cwd=cc.working_dir or "/",
                user=cc.user or "",
                network="host" if network == "host" else "none",
                stdin=DEVNULL,
                stdout=output,
                stderr=output,
            )
        )

    status, root, _last = execute_in_overlay(state, ctx, launch)
    if status != 0:
        raise StepFailed(
            f"{shown(instr)}: the command exited with status {status}", status, instr.location
        )
    return commit_layer(state, ctx, key, created_by, root)
