"""RUN: a command in the sandbox on an overlay of the parent layers; the upper dir is the layer."""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterable
from pathlib import Path

from builder.engine import cachekey
from builder.engine.executor import Mount, OverlayRoot, Process
from builder.engine.options import NETWORK_HOST, SECURITY_INSECURE
from builder.engine.runmounts import (
    PreparedMounts,
    bind_key,
    cache_dir,
    materialize,
    secret_mount,
)
from builder.engine.state import ImageState
from builder.engine.steps.base import (
    StepContext,
    heredoc_body,
    is_heredoc_marker,
    run_env,
    shown,
    where,
)
from builder.engine.steps.layer_step import (
    cached_layer,
    commit_layer_behind,
    execute_in_overlay,
)
from builder.engine.steps.metadata import shell_of
from builder.errors import RecipeError, StepFailed
from builder.recipe import instructions as ins
from builder.recipe.gostr import go_quote
from builder.recipe.mounts import MountError, RunMount
from builder.recipe.resolve import resolve
from builder.sandbox.limits import OutOfMemory
from builder.sandbox.spec import NetworkMode, ProcessStartError

# BuildKit mounts a heredoc with a shebang here, read-only, and runs it as a file.
PIPES = "/dev/pipes"


def _shebang_heredoc(instr: ins.Run) -> tuple[str, str] | None:
    """(file name, body) of a shell-form RUN that is one heredoc starting with `#!`: BuildKit
    writes it to a file (0755, never expanded) and runs that, so its interpreter runs it."""
    if instr.exec_form or len(instr.heredocs) != 1 or not is_heredoc_marker(instr.command[0]):
        return None
    body = heredoc_body(instr.heredocs[0])
    return (instr.heredocs[0].name, body) if body.startswith("#!") else None


def _script(instr: ins.Run) -> str:
    """The shell script of a shell-form RUN, with its heredocs (BuildKit's rules).

    A RUN that is nothing but one heredoc runs the heredoc's body as the script; otherwise
    the command line is followed by the raw bodies and terminators (no newline after the
    last, and `<<-` tabs left for the shell to strip), as BuildKit joins them.
    """
    command = instr.command[0]
    if not instr.heredocs:
        return command
    if len(instr.heredocs) == 1 and is_heredoc_marker(command):
        return heredoc_body(instr.heredocs[0])
    return "\n".join([command, *(h.content + h.name for h in instr.heredocs)])


def _history_text(argv: tuple[str, ...], ctx: StepContext) -> str:
    """BuildKit's history line: `RUN [|N a=1 b=2 ]argv... # buildkit`, N the stage's ARGs."""
    args = ctx.scope.history_args()
    prefix = [f"|{len(args)}", *args] if args else []
    return "RUN " + " ".join([*prefix, *argv]) + " # buildkit"


def _with_proxies(env: list[str], proxies: list[str]) -> tuple[str, ...]:
    """The process env: the proxy build args last, replacing a same-named entry (as the OCI
    spec's env is built in BuildKit); they stay out of the key, which uses `env`."""
    merged = dict(entry.partition("=")[::2] for entry in (*env, *proxies))
    return tuple(f"{k}={v}" for k, v in merged.items())


def _mounts(instr: ins.Run, ctx: StepContext) -> list[RunMount]:
    """The mounts, parsed (and refused if not valid) by resolve() as lint parses them."""
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Run)
    return list(resolved.run_mounts)


def _sources(mounts: list[RunMount], ctx: StepContext, instr: ins.Run) -> dict[str, ImageState]:
    """The stages and images the mounts' from= name, by name (a stage the plan built
    first, else an image: the store's, or pulled, as for COPY --from)."""
    found: dict[str, ImageState] = {}
    for m in mounts:
        if m.from_ is not None and m.from_ not in found:
            from builder.engine.steps.copy_from import source_state  # only for from=

            found[m.from_] = source_state(m.from_, ctx, instr.location, "RUN --mount from")
    return found


def _mount_key(
    mount: RunMount, ctx: StepContext, instr: ins.Run, sources: dict[str, ImageState]
) -> list[object]:
    """What a mount adds to the key: its shape, and for a bind what it shows: the
    context's content, or the source stage's key and the path."""
    shape: list[object] = [mount.type, mount.target, mount.readonly, mount.id]
    if mount.type == "bind" and mount.from_ is not None:
        shape.append([sources[mount.from_].key, mount.source or "/"])
    elif mount.type == "bind":
        try:
            shape.append(bind_key(ctx.context, mount.source or "."))
        except MountError as err:
            raise RecipeError(str(err), instr.location) from None
    if mount.env is not None:  # the variable's name, never the secret's value
        shape.append(["env", mount.env])
    if mount.size is not None:  # (only when given: other keys stay as they were)
        shape.append(["size", mount.size])
    return shape


def _prepare(
    mounts: list[RunMount], ctx: StepContext, instr: ins.Run, sources: dict[str, ImageState]
) -> PreparedMounts:
    """Sandbox mounts for a step that runs (on a cache hit nothing is prepared)."""
    prepared = PreparedMounts()

    def failed(message: str, status: int) -> StepFailed:
        return StepFailed(f"{shown(instr)}: --mount from=: {message}", status, instr.location)

    def from_source(m: RunMount, dest: Path) -> Path:
        from builder.engine.steps.copy_from import stage_files

        assert m.from_ is not None
        path = m.source or "/"
        return stage_files(sources[m.from_], path, m.from_, ctx, dest, failed)

    try:
        for m in mounts:
            if m.type == "bind" and m.from_ is not None:
                staging = ctx.store.tmp_dir("bind")
                prepared.cleanup.append(staging)
                source = from_source(m, staging / "src")
                prepared.mounts.append(Mount(m.target, "bind", source, m.readonly))
            elif m.type == "cache" and m.from_ is not None:
                key = sources[m.from_].key
                seed = functools.partial(from_source, m)
                directory = cache_dir(ctx.store.cache_mounts, m, key, seed)
                if m.sharing == "locked":
                    prepared.lock(directory)
                prepared.mounts.append(Mount(m.target, "bind", directory, m.readonly))
            elif m.type == "bind":
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
                options = f"size={m.size}" if m.size is not None else ""
                prepared.mounts.append(Mount(m.target, "tmpfs", None, False, options=options))
            elif m.type == "secret":
                secret, entry = secret_mount(ctx.secrets, m)
                if secret is not None:
                    prepared.mounts.append(secret)
                if entry is not None:
                    prepared.env.append(entry)
    except MountError as err:
        prepared.close()
        raise RecipeError(str(err), instr.location) from None
    except BaseException:
        prepared.close()
        raise
    return prepared


# RUN's and the build's network names (BuildKit's) as the sandbox calls them.
SANDBOX_NETWORK: dict[str, NetworkMode] = {"default": "private", "none": "none", "host": "host"}


def check_entitlements(runs: Iterable[ins.Instruction], allow: frozenset[str]) -> None:
    """Refuse, before anything runs, a RUN asking for what the build did not allow, as
    BuildKit checks when the solve starts. (--network and --security are never expanded,
    so the plan says it all; the steps of a base's ONBUILD are checked when they come.)"""
    for instr in runs:
        if isinstance(instr, ins.Run):
            _entitle(instr, instr.network or "default", allow)


def _entitle(instr: ins.Run, network: str, allow: frozenset[str]) -> None:
    """Refuse what the build did not allow, as BuildKit does before a step runs (and before
    its cache is looked up: a cached layer made with the host network is no exception)."""
    for asked, flag, entitlement in (
        (network == "host", "--network=host", NETWORK_HOST),
        (instr.security == "insecure", "--security=insecure", SECURITY_INSECURE),
    ):
        if asked and entitlement not in allow:
            raise RecipeError(
                f"RUN {flag}: {entitlement} is not allowed",
                instr.location,
                f"allow it with --allow {entitlement}",
            )


def run_step(instr: ins.Run, state: ImageState, ctx: StepContext) -> ImageState:
    cc = state.config.config
    network = instr.network if instr.network not in (None, "default") else ctx.network
    _entitle(instr, network, ctx.allow)
    mounts = _mounts(instr, ctx)
    sources = _sources(mounts, ctx, instr)
    shebang = _shebang_heredoc(instr)
    if shebang is not None:
        argv: tuple[str, ...] = (*shell_of(state), posixpath.join(PIPES, shebang[0]))
    elif instr.exec_form:
        argv = tuple(instr.command)
    else:
        argv = (*shell_of(state), _script(instr))
    env = run_env(ctx.scope.run_env())
    created_by = _history_text(argv, ctx)
    payload: dict[str, object] = {
        "argv": argv,
        "env": env,
        "cwd": cc.working_dir or "/",
        "user": cc.user or "",
        "network": network,
    }
    if instr.security == "insecure":  # every capability, no seccomp: another layer
        payload["security"] = "insecure"
    if ctx.add_hosts:  # BuildKit keys a step by its extra hosts too
        payload["add_hosts"] = [[h.name, h.address] for h in ctx.add_hosts]
    if mounts:
        payload["mounts"] = [_mount_key(m, ctx, instr, sources) for m in mounts]
    if shebang is not None:
        payload["script"] = shebang[1]
    key = cachekey.chain(state.key, "RUN", payload)
    hit = cached_layer(state, ctx, key, created_by)
    if hit is not None:
        return hit

    def launch(root: OverlayRoot, output: int) -> int:
        process = Process(
            argv=argv,
            # The proxy args and secrets' env: for the process only, not in the key.
            env=(*_with_proxies(env, ctx.scope.proxy_env()), *prepared.env),
            cwd=cc.working_dir or "/",
            user=cc.user or "",
            network=SANDBOX_NETWORK[network],
            mounts=tuple(prepared.mounts),
            insecure=instr.security == "insecure",
            extra_hosts=ctx.add_hosts,
        )
        return ctx.executor.run(root, process, output)

    prepared = _prepare(mounts, ctx, instr, sources)
    if shebang is not None:
        staging = ctx.store.tmp_dir("heredoc")
        staging.chmod(0o755)  # any USER reads it, as BuildKit's mount
        prepared.cleanup.append(staging)
        script = staging / shebang[0]
        script.write_text(shebang[1])
        script.chmod(0o755)
        prepared.mounts.append(Mount(PIPES, "bind", staging, readonly=True))
    try:
        status, root, _last = execute_in_overlay(state, ctx, launch)
    except OutOfMemory as oom:  # the step failed, not the sandbox: exit 5, as any RUN
        raise StepFailed(f"{shown(instr)}: {oom}", oom.status, instr.location) from None
    except ProcessStartError as err:  # an unknown USER, a WORKDIR it cannot enter
        raise StepFailed(f"{shown(instr)}: {err}", 1, instr.location) from None
    finally:
        prepared.close()
    if status != 0:
        # BuildKit's words (solver/llbsolver/ops/exec.go), which users search for.
        process = go_quote(" ".join(argv))
        raise StepFailed(
            f"{shown(instr)}: process {process} did not complete successfully: exit code: {status}",
            status,
            instr.location,
        )
    return commit_layer_behind(state, ctx, key, created_by, root, where(instr))
