"""COPY --from=STAGE|IMAGE: files from another root, packed there and unpacked here.

Each half runs in a sandbox on its own root (see build/stagecopy.py); a temp file in the
store carries the tar between them. The cache key chains on the source's own key (its
stage's cache chain, or the image's manifest digest), so an unchanged source hits.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable

from builder.engine import cachekey
from builder.engine.copier import Ownership
from builder.engine.executor import InRoot, OverlayRoot
from builder.engine.stagecopy import Destination, pack, unpack
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext, shown
from builder.engine.steps.layer_step import (
    cached_layer,
    commit_layer,
    discard,
    execute_in_overlay,
)
from builder.errors import ImageNotFound, RegistryError, StepFailed
from builder.layer.tree import remove_tree
from builder.recipe import instructions as ins
from builder.recipe.chmod import Chmod


def _source_state(name: str, ctx: StepContext, instr: ins.Copy) -> ImageState:
    """A finished stage (by name or index), else an image in the store."""
    stage = ctx.stages.get(name.lower()) or ctx.stages.get(name)
    if stage is not None:
        return stage
    loc = instr.location
    try:
        image = (ctx.images or ctx.store.image)(name)
    except ImageNotFound as err:
        where = "in the store" if ctx.images is None else f"({err})"
        raise ImageNotFound(
            f"{loc.filename}:{loc.line}: COPY --from={name}: no stage of that name and no"
            f" such image {where}"
        ) from None
    except RegistryError as err:
        raise RegistryError(
            f"{loc.filename}:{loc.line}: COPY --from={name}: no stage of that name, and {err}"
        ) from None
    return ImageState.of_image(image)


def copy_from_step(
    instr: ins.Copy,
    resolved: ins.Copy,
    dest: str,
    chmod: Chmod | None,
    state: ImageState,
    ctx: StepContext,
) -> ImageState:
    assert instr.from_stage is not None
    source = _source_state(instr.from_stage, ctx, instr)
    created_by = f"COPY --from={instr.from_stage} {' '.join(resolved.sources)} {resolved.dest}"
    payload = {
        "from": source.key,
        "sources": resolved.sources,
        "dest": dest,
        "chown": resolved.chown,
        "chmod": resolved.chmod,
    }
    key = cachekey.chain(state.key, "COPY --from", payload)
    hit = cached_layer(state, ctx, key, f"{created_by} # buildkit")
    if hit is not None:
        return hit
    single = len(resolved.sources) == 1 and not dest.endswith("/")
    target = Destination(posixpath.normpath(dest), single)
    staging = ctx.store.tmp_dir("copy-from")
    fd = os.open(staging / "sources.tar", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    def in_sandbox(work: InRoot) -> Callable[[OverlayRoot, int], int]:
        def launch(root: OverlayRoot, output: int) -> int:
            return ctx.executor.call(root, "COPY", work, output, keep_fds=(fd,))

        return launch

    try:
        status, source_root, failure = execute_in_overlay(
            source,
            ctx,
            in_sandbox(
                functools.partial(pack, out_fd=fd, sources=resolved.sources, ref=instr.from_stage)
            ),
        )
        if status == 0:
            discard(source_root)  # the source is only read
        else:
            raise StepFailed(f"{shown(instr)}: {failure or 'failed'}", status, instr.location)
        os.lseek(fd, 0, os.SEEK_SET)
        unpacker = functools.partial(
            unpack, in_fd=fd, dest=target, owner=Ownership(resolved.chown), chmod=chmod
        )
        status, root, failure = execute_in_overlay(state, ctx, in_sandbox(unpacker))
        if status != 0:
            raise StepFailed(f"{shown(instr)}: {failure or 'failed'}", status, instr.location)
    finally:
        os.close(fd)
        remove_tree(staging, ignore_errors=True)
    return commit_layer(state, ctx, key, f"{created_by} # buildkit", root)
