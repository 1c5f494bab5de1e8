"""COPY (and ADD of local files): context files written into the image from inside the root."""

from __future__ import annotations

import functools
import os
import posixpath

from builder.engine import cachekey, relink
from builder.engine.context import copy_digest
from builder.engine.copier import InlineFile, Ownership, copy_into_root
from builder.engine.executor import OverlayRoot
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext, heredoc_body, is_heredoc_marker, where
from builder.engine.steps.base import shown as _shown
from builder.engine.steps.history import copy_history
from builder.engine.steps.layer_step import (
    cached_layer,
    commit_layer_behind,
    discard,
    execute_in_overlay,
    record_key,
)
from builder.errors import BuildContextError, StepFailed
from builder.recipe import instructions as ins
from builder.recipe.chmod import parse as parse_chmod
from builder.recipe.resolve import resolve


def _split_sources(
    instr: ins.Copy | ins.Add, dest: str
) -> tuple[list[InlineFile], tuple[str, ...]]:
    """Heredoc sources (`<<EOF`, in the order their bodies follow) and context sources."""
    into_dir = dest.endswith("/") or len(instr.sources) > 1
    bodies = iter(instr.heredocs)
    inline: list[InlineFile] = []
    files: list[str] = []
    for source in instr.sources:
        if is_heredoc_marker(source):
            heredoc = next(bodies)
            target = posixpath.join(dest, heredoc.name) if into_dir else dest
            inline.append(InlineFile(heredoc_body(heredoc).encode(), target))
        else:
            files.append(source)
    return inline, tuple(files)


def copy_step(instr: ins.Copy | ins.Add, state: ImageState, ctx: StepContext) -> ImageState:
    resolved = resolve(instr, ctx.scope.expansion_env(), ctx.escape)
    assert isinstance(resolved, ins.Copy | ins.Add)
    workdir = state.config.config.working_dir or "/"
    dest = posixpath.join(workdir, resolved.dest)
    if resolved.dest.endswith("/") and not dest.endswith("/"):
        dest += "/"
    chmod = parse_chmod(resolved.chmod) if resolved.chmod else None
    Ownership(resolved.chown).check_base(state, _shown(instr), instr.location)
    if isinstance(instr, ins.Copy) and instr.from_stage is not None:
        assert isinstance(resolved, ins.Copy)
        from builder.engine.steps.copy_from import copy_from_step  # only for --from

        return copy_from_step(instr, resolved, dest, chmod, state, ctx)
    inline, files = _split_sources(resolved, dest)

    def located(err: BuildContextError) -> BuildContextError:
        return BuildContextError(f"{instr.location.filename}:{instr.location.line}: {err}")

    try:
        # The key first: a cached COPY of an unchanged context needs no plan (context.py).
        files_key = ctx.context.copy_key(files, dest) if files else copy_digest([])
    except BuildContextError as err:
        raise located(err) from None
    keyword = instr.keyword
    created_by = copy_history(resolved)
    # ADD unpacks a local archive unless --unpack=false (BuildKit's --unpack).
    unpack_archives = isinstance(resolved, ins.Add) and resolved.unpack is not False
    payload: dict[str, object] = {
        "files": files_key,
        "inline": [(f.target, f.content.decode()) for f in inline],
        "chown": resolved.chown,
        "chmod": resolved.chmod,
    }
    if isinstance(resolved, ins.Add) and resolved.unpack is not None:
        payload["unpack"] = resolved.unpack
    key = cachekey.chain(state.key, keyword, payload)
    hit = cached_layer(state, ctx, key, created_by)
    if hit is not None:
        return hit
    # Planned again (the context's entries are walked once per build): a plan that failed
    # raised above, and the key came from this same walk unless the snapshot gave it.
    try:
        items, planned = (
            ctx.context.plan_keyed(files, dest, files_key) if files else ([], files_key)
        )
    except BuildContextError as err:  # changed since the snapshot's walk
        raise located(err) from None
    if planned != files_key:  # changed since the snapshot's walk: keyed by what is copied
        payload["files"] = planned
        key = cachekey.chain(state.key, keyword, payload)
        hit = cached_layer(state, ctx, key, created_by)
        if hit is not None:
            return hit
    if unpack_archives:
        from builder.engine.extract import preload

        preload()
    owner = Ownership(resolved.chown)
    # Incremental: the files the last version of this layer holds are linked, not copied,
    # and its blob lends its unchanged frames (engine/relink, layer/frames).
    lineage = None if unpack_archives else relink.lineage_key(state.key, keyword, payload)
    inc = relink.Incremental(ctx.store, lineage, items, reuse=not ctx.no_cache)

    def launch(root: OverlayRoot, output: int) -> int:
        context_fd = os.open(ctx.context.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            writer = functools.partial(
                copy_into_root,
                context_fd=context_fd,
                items=items,
                inline=inline,
                owner=owner,
                chmod=chmod,
                unpack_archives=unpack_archives,
                deferred=inc.deferred,
                report_fd=inc.report_fd,
            )
            keep = (context_fd,) if inc.report_fd < 0 else (context_fd, inc.report_fd)
            return ctx.executor.call(root, keyword, writer, output, keep_fds=keep)
        finally:
            os.close(context_fd)

    try:
        status, root, failure = execute_in_overlay(state, ctx, launch)
        if status != 0:
            raise StepFailed(f"{_shown(instr)}: {failure or 'failed'}", status, instr.location)
        inc.read()
    finally:
        inc.close()
    try:
        inc.place(root.upper, ctx.context.root)
    except OSError as err:  # a context file gone since it was read: as the writer says it
        discard(root, ctx)
        raise StepFailed(f"{_shown(instr)}: {err}", 1, instr.location) from None
    except BaseException:
        discard(root, ctx)
        raise
    # Written while the next step runs, as a RUN's (engine/pending): a big context's layer
    # (hashing and compressing what changed) beside the RUN after it.
    step = record_key(ctx, key)
    return commit_layer_behind(
        state,
        ctx,
        key,
        created_by,
        root,
        where(instr),
        previous=inc.previous_blob,
        keep_frames=lineage is not None,
        then=lambda: inc.remember(step),  # after the step's own record
    )
