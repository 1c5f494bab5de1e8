"""COPY --from=STAGE|IMAGE: files from another root, packed there and unpacked here.

Each half runs with its own root as / (see engine/stagecopy.py); a temp file in the
store carries the tar between them. The cache key chains on the source's own key (its
stage's cache chain, or the image's manifest digest), so an unchanged source hits.
"""

from __future__ import annotations

import functools
import os
import posixpath
import tarfile
from collections.abc import Callable
from pathlib import Path

from builder.engine import cachekey
from builder.engine.copier import Ownership
from builder.engine.executor import InRoot, OverlayRoot
from builder.engine.stagecopy import Destination, pack, unpack
from builder.engine.state import ImageState
from builder.engine.steps.base import StepContext, shown
from builder.engine.steps.history import copy_history
from builder.engine.steps.layer_step import (
    cached_layer,
    commit_layer,
    discard,
    execute_in_overlay,
)
from builder.errors import ImageNotFound, RegistryError, SourceLocation, StepFailed
from builder.layer.tree import remove_tree
from builder.recipe import instructions as ins
from builder.recipe.chmod import Chmod


def source_state(
    name: str, ctx: StepContext, loc: SourceLocation, what: str = "COPY --from"
) -> ImageState:
    """A finished stage (by name or index), else an image (the store's, else pulled)."""
    stage = ctx.stages.get(name.lower()) or ctx.stages.get(name)
    if stage is not None:
        return stage
    try:
        image = (ctx.images or ctx.store.image)(name)
    except ImageNotFound as err:
        where = "in the store" if ctx.images is None else f"({err})"
        raise ImageNotFound(
            f"{loc.filename}:{loc.line}: {what}={name}: no stage of that name and no"
            f" such image {where}"
        ) from None
    except RegistryError as err:
        raise RegistryError(
            f"{loc.filename}:{loc.line}: {what}={name}: no stage of that name, and {err}"
        ) from None
    return ImageState.of_image(image)


def _pack_in(
    source: ImageState,
    ctx: StepContext,
    path: tuple[str, ...],
    ref: str,
    fd: int,
    failed: Callable[[str, int], BaseException],
) -> None:
    """PATHS of SOURCE's root as a tar on FD, packed with that root as /."""
    work = functools.partial(pack, out_fd=fd, sources=path, ref=ref)

    def launch(root: OverlayRoot, output: int) -> int:
        return ctx.executor.call(root, "COPY", work, output, keep_fds=(fd,))

    status, source_root, failure = execute_in_overlay(source, ctx, launch)
    if status != 0:
        raise failed(failure or "failed", status)
    discard(source_root, ctx)  # the source is only read


def stage_files(
    source: ImageState,
    path: str,
    ref: str,
    ctx: StepContext,
    dest: Path,
    failed: Callable[[str, int], BaseException],
) -> Path:
    """The file or directory PATH of SOURCE's root, copied (ids and modes kept) into the
    host dir DEST, for RUN --mount from=: a directory's contents land in DEST itself (the
    return value), a file under its own name in DEST (the return value is that file).
    Unpacked on the host by extract(), which resolves every name inside DEST."""
    from builder.engine.extract import extract

    staging = ctx.store.tmp_dir("mount-from")
    fd = os.open(staging / "source.tar", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _pack_in(source, ctx, (path,), ref, fd, failed)
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            first = tar.next()
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "rb") as raw:
            extract(tarfile.open(fileobj=raw, mode="r|"), str(dest))  # noqa: SIM115 (it closes it)
    finally:
        os.close(fd)
        remove_tree(staging, ignore_errors=True)
    if first is not None and posixpath.normpath(first.name) != ".":
        return dest / posixpath.normpath(first.name)
    return dest


def copy_from_step(
    instr: ins.Copy,
    resolved: ins.Copy,
    dest: str,
    chmod: Chmod | None,
    state: ImageState,
    ctx: StepContext,
) -> ImageState:
    assert instr.from_stage is not None
    source = source_state(instr.from_stage, ctx, instr.location)
    created_by = copy_history(resolved)
    payload = {
        "from": source.key,
        "sources": resolved.sources,
        "dest": dest,
        "chown": resolved.chown,
        "chmod": resolved.chmod,
    }
    key = cachekey.chain(state.key, "COPY --from", payload)
    hit = cached_layer(state, ctx, key, created_by)
    if hit is not None:
        return hit
    source = ctx.realize(source)  # a stage only probed so far is built now: its files are read
    single = len(resolved.sources) == 1 and not dest.endswith("/")
    target = Destination(posixpath.normpath(dest), single)
    staging = ctx.store.tmp_dir("copy-from")
    fd = os.open(staging / "sources.tar", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    def in_sandbox(work: InRoot) -> Callable[[OverlayRoot, int], int]:
        def launch(root: OverlayRoot, output: int) -> int:
            return ctx.executor.call(root, "COPY", work, output, keep_fds=(fd,))

        return launch

    def failed(message: str, status: int) -> StepFailed:
        return StepFailed(f"{shown(instr)}: {message}", status, instr.location)

    try:
        _pack_in(source, ctx, resolved.sources, instr.from_stage, fd, failed)
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
    return commit_layer(state, ctx, key, created_by, root)
